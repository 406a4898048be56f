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
from promis_repro.data.task import StdioTests, Task
from promis_repro.errors import UserError
from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.registry import ModelSpec, get_model
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
from promis_repro.strategies.registry import NEEDS_TRAINING, STRATEGIES, USES_REWRITER, check_strategy

log = logging.getLogger(__name__)


class Models:
    """The generator and the rewriter behind the cache (one instance when they are the same model)."""

    def __init__(
        self, generator: str, rewriter: str | None, rewriter_spec: ModelSpec | None = None, **options: Any
    ) -> None:
        self.generator = CachedGenerator(get_model(generator), **options)
        self.rewriter = None
        if rewriter_spec is not None:
            self.rewriter = CachedGenerator(rewriter_spec, **options)
        elif rewriter is not None:
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


def selfgen_prompt(ctx: EpisodeContext, n: int) -> tuple[ChatPrompt, str]:
    """The test-writing prompt (the task as the generator sees it: signature, shown examples) and its answer prefix."""
    spec = ctx.tools.generator_spec
    shown = ctx.model_prompt(ctx.parts.text)
    task_text = shown.messages[-1][1] if shown.messages else shown.text
    if spec.prompt_format != "completion":
        return ChatPrompt(messages=(("user", selfgen_request(ctx.task, task_text, n)),)), ""
    # completion models continue a commented task with the first test's opening
    commented = "\n".join(f"# {line}" for line in task_text.strip().splitlines())
    if ctx.task.entry_point and not isinstance(ctx.task.visible_tests, StdioTests):
        prefix = f"assert {ctx.task.entry_point.split('().')[0]}("
        return ChatPrompt(text=f"{commented}\n\n# Test cases:\n{prefix}"), prefix
    prefix = "<input>\n"
    return ChatPrompt(text=f"{commented}\n\n# Example test cases:\n{prefix}"), prefix


def with_selfgen(ctx: EpisodeContext, build_suite: Callable[[str], FeedbackSuite], body: Episode) -> Episode:
    """First ask the generator for its own tests (one call, outside the code budget), then run ``body``."""
    prompt, prefix = selfgen_prompt(ctx, ctx.config.selfgen_count(ctx.strategy))
    completion = yield from ctx.ask("generator", prompt, "tests")
    ctx.suite = build_suite(prefix + completion.text)
    ctx.trajectory.info["selfgen_tests"] = ctx.suite.describe()["tests"]
    result = yield from body
    return result


def episode_function(strategy: str, tasks: list[Task], options: dict[str, Any]) -> Callable[[EpisodeContext], Episode]:
    trained = options.get("trained")
    if strategy in NEEDS_TRAINING and not trained:
        raise UserError(f"strategy {strategy} needs what promis-repro train --agent {strategy} wrote: --trained DIR")
    if strategy == "lpo":
        from promis_repro.strategies.lpo import load_instruction, lpo_episode

        return lpo_episode(load_instruction(trained))
    if strategy == "ppo":
        from promis_repro.agent.ppo import load_policy, policy_episode

        policy, embeddings = load_policy(trained)
        return policy_episode(policy, embeddings, {t.task_id: i / len(tasks) for i, t in enumerate(tasks)})
    function = STRATEGIES[strategy]
    if function is None:  # pragma: no cover - every name above is handled
        raise UserError(f"strategy {strategy} has no episode function")
    return function


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
    function = episode_function(strategy, tasks, options or {})
    tools = Tools(
        models.generator.spec, models.rewriter.spec if models.rewriter else None, config, reward or RewardConfig(), seed
    )
    episodes: dict[str, Episode] = {}
    contexts: dict[str, EpisodeContext] = {}
    for task in tasks:
        # visible and selfgen suites are built from the public view: only oracle's holds the full task
        suite = (
            FeedbackSuite(public_view(task), "selfgen", None) if feedback == "selfgen" else fixed_suite(task, feedback)
        )
        ctx = EpisodeContext(public_view(task), editable_parts(task), suite, tools, strategy)
        body = function(ctx)
        if feedback == "selfgen":
            limit = config.selfgen_count(strategy)

            def build(text: str, task: Task = task, limit: int = limit) -> FeedbackSuite:
                return selfgen_suite(public_view(task), text, limit)

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
    rewriter_spec = None
    if strategy == "rl_rewriter":
        from promis_repro.agent.grpo import adapter_spec

        if not (options or {}).get("trained"):
            raise UserError(
                "strategy rl_rewriter needs what promis-repro train --agent rl_rewriter wrote: --trained DIR"
            )
        if rewriter is None:
            raise UserError("strategy rl_rewriter needs the base rewriter model (--rewriter)")
        rewriter_spec = adapter_spec(get_model(rewriter), options["trained"])
    models = Models(model, rewriter, batch_size=batch_size, rewriter_spec=rewriter_spec)
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
    # samples.jsonl marks a complete run: drop an old one first, so a crash below never pairs it with new files
    (out / "samples.jsonl").unlink(missing_ok=True)
    atomic_write_jsonl(out / "trajectories.jsonl", steps)
    atomic_write_json(out / "cost.json", cost)
    # samples last: its presence marks a complete run
    atomic_write_jsonl(out / "samples.jsonl", samples)
    return cost
