"""Run one strategy on a benchmark: samples.jsonl (evaluator format), trajectories.jsonl, cost.json."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from promis_repro.data.registry import load_benchmark
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.registry import get_model
from promis_repro.generation.service import CachedGenerator
from promis_repro.io import atomic_write_json, atomic_write_jsonl
from promis_repro.provenance import provenance
from promis_repro.rewards import RewardConfig
from promis_repro.strategies.actions import EpisodeContext, Tools
from promis_repro.strategies.config import StrategyConfig
from promis_repro.strategies.engine import Episode, Trajectory, drive
from promis_repro.strategies.epic import BARRIER, make_barrier_resolver
from promis_repro.strategies.feedback import (
    FeedbackSuite,
    check_mode,
    fixed_suite,
    public_view,
    selfgen_request,
    selfgen_suite,
)
from promis_repro.strategies.prompt_parts import editable_parts
from promis_repro.strategies.registry import AGENT_FACTORIES, STRATEGIES, USES_REWRITER, check_strategy

log = logging.getLogger(__name__)


class Models:
    """The generator and the rewriter behind the cache (one instance when they are the same model)."""

    def __init__(self, generator: str, rewriter: str | None, **options: Any) -> None:
        self.generator = CachedGenerator(get_model(generator), **options)
        self.rewriter = None
        if rewriter is not None:
            self.rewriter = self.generator if rewriter == generator else CachedGenerator(get_model(rewriter), **options)
        for model in (self.generator, self.rewriter):
            if model is not None and model.spec.role == "embedder":
                raise UserError(f"model {model.spec.name} is an embedder, not a text generator")
        if self.rewriter is not None and self.rewriter.spec.prompt_format == "completion":
            raise UserError(f"rewriter {self.rewriter.spec.name} is not an instruct model")

    def call(self, role: str, prompts: list[ChatPrompt], settings: DecodingSettings) -> list[Completion]:
        model = self.generator if role == "generator" else self.rewriter
        if model is None:
            raise UserError("this strategy needs a rewriter model (--rewriter)")
        return model.generate(prompts, settings)


def with_selfgen(ctx: EpisodeContext, build_suite: Callable[[str], FeedbackSuite], body: Episode) -> Episode:
    """First ask the generator for its own tests (one call, outside the code budget), then run ``body``."""
    spec = ctx.tools.generator_spec
    request = selfgen_request(ctx.task, ctx.parts.text, ctx.config.selfgen_tests)
    if spec.prompt_format == "completion":
        name = ctx.task.entry_point or "solution"
        prompt = ChatPrompt(text=f'"""\n{ctx.parts.compose(ctx.parts.text).strip()}\n"""\n# tests\nassert {name}(')
        prefix = f"assert {name}("
    else:
        prompt = ChatPrompt(messages=(("user", request),))
        prefix = ""
    completion = yield from ctx.ask("generator", prompt, "tests")
    ctx.suite = build_suite(prefix + completion.text)
    ctx.trajectory.info["selfgen_tests"] = ctx.suite.describe()["tests"]
    result = yield from body
    return result


def episode_function(strategy: str, options: dict[str, Any]) -> Callable[[EpisodeContext], Episode]:
    if strategy == "lpo":
        from promis_repro.strategies.lpo import load_instruction, lpo_episode

        source = options.get("lpo_dir") or options["config"].lpo.get("instruction_file")
        if not source:
            raise UserError("strategy lpo needs its trained instruction: --lpo-dir DIR (from promis-repro train)")
        return lpo_episode(load_instruction(source))
    function = STRATEGIES[strategy]
    if function is not None:
        return function
    if strategy not in AGENT_FACTORIES:
        raise UserError(f"strategy {strategy} needs a trained agent; train it with promis-repro train --agent")
    return AGENT_FACTORIES[strategy](**options)


def run_strategy(
    strategy: str,
    tasks: list[Task],
    models: Models,
    *,
    seed: int,
    feedback: str,
    config: StrategyConfig,
    reward: RewardConfig | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[list[Trajectory], dict[str, FeedbackSuite]]:
    check_strategy(strategy)
    check_mode(feedback)
    if strategy in USES_REWRITER and models.rewriter is None:
        raise UserError(f"strategy {strategy} needs a rewriter model (--rewriter)")
    function = episode_function(strategy, {"config": config, "models": models, **(options or {})})
    tools = Tools(
        models.generator.spec, models.rewriter.spec if models.rewriter else None, config, reward or RewardConfig(), seed
    )
    episodes: dict[str, Episode] = {}
    contexts: dict[str, EpisodeContext] = {}
    for task in tasks:
        suite = FeedbackSuite(task, "selfgen", None) if feedback == "selfgen" else fixed_suite(task, feedback)
        ctx = EpisodeContext(public_view(task), editable_parts(task), suite, tools, strategy)
        body = function(ctx)
        if feedback == "selfgen":
            limit = config.selfgen_tests

            def build(text: str, task: Task = task, limit: int = limit) -> FeedbackSuite:
                return selfgen_suite(task, text, limit)

            body = with_selfgen(ctx, build, body)
        episodes[task.task_id], contexts[task.task_id] = body, ctx
    bar = tqdm(total=len(tasks), desc=f"{strategy}", leave=False, disable=not progress)
    resolver = make_barrier_resolver(len(tasks), config.epic_min_gain)
    results = drive(
        episodes,
        models.call,
        {k: c.ledger for k, c in contexts.items()},
        tools.budget,
        resolve_barrier=lambda name, payloads: resolver(name, payloads) if name == BARRIER else {},
        progress=bar.update,
    )
    bar.close()
    return [results[t.task_id] for t in tasks], {k: c.suite for k, c in contexts.items()}


def run_to_directory(
    *,
    strategy: str,
    model: str,
    rewriter: str | None,
    benchmark: str,
    seed: int,
    feedback: str,
    out: str | os.PathLike[str],
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    config: StrategyConfig | None = None,
    reward: RewardConfig | None = None,
    options: dict[str, Any] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """The ``promis-repro run`` command: write samples.jsonl, trajectories.jsonl and cost.json into ``out``."""
    check_strategy(strategy)
    check_mode(feedback)
    config = config or StrategyConfig()
    reward = reward or RewardConfig()
    tasks = load_benchmark(benchmark, data_dir)[:limit]
    if not tasks:
        raise UserError(f"benchmark {benchmark} has no tasks to run (limit {limit})")
    if strategy not in USES_REWRITER:
        rewriter = None  # recorded as unused
    models = Models(model, rewriter, batch_size=batch_size)
    started = time.perf_counter()
    trajectories, suites = run_strategy(
        strategy,
        tasks,
        models,
        seed=seed,
        feedback=feedback,
        config=config,
        reward=reward,
        options=options,
        progress=progress,
    )
    wall = time.perf_counter() - started
    leaky = feedback == "oracle"
    samples, steps, per_task = [], [], {}
    for task, trajectory in zip(tasks, trajectories, strict=True):
        samples.append(
            {
                "task_id": task.task_id,
                "solution": trajectory.final_code,
                "strategy": strategy,
                "seed": seed,
                "feedback": feedback,
                "leaky": leaky,
                "final_candidate": trajectory.final_step,
                "feedback_fitness": trajectory.final_fitness,
                "feedback_tests": suites[task.task_id].n_tests,
            }
        )
        for step in trajectory.steps:
            steps.append({**step, "seed": seed, "feedback_mode": feedback, "leaky": leaky})
        per_task[task.task_id] = {**trajectory.ledger.as_dict(), "steps": len(trajectory.steps), **trajectory.info}
    totals: dict[str, Any] = {"generator_calls": 0, "rewriter_calls": 0, "tokens": 0, "model_seconds": 0.0}
    for entry in per_task.values():
        totals["generator_calls"] += entry["generator_calls"]
        totals["rewriter_calls"] += entry["rewriter_calls"]
        totals["tokens"] += entry["tokens"]
        totals["model_seconds"] += sum(entry["model_seconds"].values())
    run_config = {
        "command": "run",
        "strategy": strategy,
        "model": model,
        "rewriter": rewriter,
        "benchmark": benchmark,
        "seed": seed,
        "feedback": feedback,
        "limit": limit,
        "strategy_config": config.as_dict(),
        "reward": reward.as_dict(),
        **({"options": {k: str(v) for k, v in options.items()}} if options else {}),
    }
    model_ids = {"generator": models.generator.model_id}
    if models.rewriter is not None:
        model_ids["rewriter"] = models.rewriter.model_id
    cost = {
        "strategy": strategy,
        "benchmark": benchmark,
        "feedback": feedback,
        "leaky": leaky,
        "n_tasks": len(tasks),
        "budget": {"generator_calls": config.max_generator_calls, "rewriter_calls": config.max_rewriter_calls},
        "reward": reward.as_dict(),
        "totals": totals,
        "mean_per_task": {k: v / len(tasks) for k, v in totals.items()},
        "wall_seconds": round(wall, 3),
        "per_task": per_task,
        "provenance": provenance(
            config=run_config, data_hashes={benchmark: tasks[0].source_hash}, model=model_ids, seed=seed
        ),
    }
    out = Path(out)
    atomic_write_jsonl(out / "trajectories.jsonl", steps)
    atomic_write_json(out / "cost.json", cost)
    # samples last: its presence marks a complete run
    atomic_write_jsonl(out / "samples.jsonl", samples)
    return cost
