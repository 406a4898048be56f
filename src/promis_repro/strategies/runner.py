"""Run a strategy's episodes on a list of tasks with the generator and rewriter behind the cache.

``promis_repro.stages.run`` turns a run into the cell's files (samples, trajectories, cost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from promis_repro.data.task import StdioTests, Task
from promis_repro.errors import UserError
from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.registry import ModelSpec, get_model
from promis_repro.generation.service import CachedGenerator
from promis_repro.progress import Progress
from promis_repro.rewards import RewardConfig
from promis_repro.strategies.actions import EpisodeContext, Tools
from promis_repro.strategies.config import StrategyConfig
from promis_repro.strategies.engine import Barrier, BarrierResolver, Budget, Episode, Ledger, Trajectory, drive
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
from promis_repro.strategies.registry import get_strategy

log = logging.getLogger(__name__)


class Models:
    """The generator and the rewriter behind the cache (one instance when they are the same model).

    ``rewriter_spec``/``generator_spec``: the model with a trained adapter (``agent.trl_agent.adapter_spec``)
    in place of the registry's ``rewriter``/``generator``.
    """

    def __init__(
        self,
        generator: str,
        rewriter: str | None,
        rewriter_spec: ModelSpec | None = None,
        *,
        generator_spec: ModelSpec | None = None,
        **options: Any,
    ) -> None:
        self.generator = CachedGenerator(generator_spec or get_model(generator), **options)
        self.rewriter = None
        if rewriter_spec is not None:
            self.rewriter = CachedGenerator(rewriter_spec, **options)
        elif rewriter is not None:
            shared = rewriter == generator and generator_spec is None  # never the generator's adapter as the rewriter
            self.rewriter = self.generator if shared else CachedGenerator(get_model(rewriter), **options)
        for model in (self.generator, self.rewriter):
            if model is not None and model.spec.role == "embedder":
                raise UserError(f"model {model.spec.name} is an embedder, not a text generator")
        if self.rewriter is not None and self.rewriter.spec.prompt_format == "completion":
            raise UserError(f"rewriter {self.rewriter.spec.name} is not an instruct model")

    def call(
        self, role: str, prompts: list[ChatPrompt], settings: DecodingSettings | list[DecodingSettings]
    ) -> list[Completion]:
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


@dataclass
class StrategyRun:
    """One strategy's episodes on its tasks, ready to be driven alone or beside other strategies'."""

    strategy: str
    tasks: list[Task]
    models: Models
    episodes: dict[str, Episode]
    contexts: dict[str, EpisodeContext]
    budget: Budget
    resolve_barrier: BarrierResolver

    def outcome(self, results: dict[str, Trajectory]) -> tuple[list[Trajectory], dict[str, FeedbackSuite]]:
        return [results[t.task_id] for t in self.tasks], {k: c.suite for k, c in self.contexts.items()}


def start_strategy(
    strategy: str,
    tasks: list[Task],
    models: Models,
    *,
    seed: int,
    feedback: str,
    config: StrategyConfig,
    reward: RewardConfig | None = None,
    trained: Any = None,
) -> StrategyRun:
    """``strategy``'s episodes on ``tasks`` (nothing runs yet); ``trained``: what its training wrote
    (``agent.trained.load_trained``)."""
    spec = get_strategy(strategy)
    check_mode(feedback)
    if spec.uses_rewriter and models.rewriter is None:
        raise UserError(f"strategy {strategy} needs a rewriter model (--rewriter)")
    if spec.trained and trained is None:
        raise UserError(f"strategy {strategy} needs what promis-repro train --agent {strategy} wrote: --trained DIR")
    function = spec.make_episode(trained)
    tools = Tools(
        models.generator.spec, models.rewriter.spec if models.rewriter else None, config, reward or RewardConfig(), seed
    )
    episodes: dict[str, Episode] = {}
    contexts: dict[str, EpisodeContext] = {}
    for index, task in enumerate(tasks):
        # visible and selfgen suites are built from the public view: only oracle's holds the full task
        suite = (
            FeedbackSuite(public_view(task), "selfgen", None) if feedback == "selfgen" else fixed_suite(task, feedback)
        )
        ctx = EpisodeContext(public_view(task), editable_parts(task), suite, tools, strategy, index / len(tasks))
        body = function(ctx)
        if feedback == "selfgen":
            limit = config.selfgen_count(strategy)

            def build(text: str, task: Task = task, limit: int = limit) -> FeedbackSuite:
                return selfgen_suite(public_view(task), text, limit)

            body = with_selfgen(ctx, build, body)
        episodes[task.task_id], contexts[task.task_id] = body, ctx
    resolver = make_barrier_resolver(len(tasks), config.epic_min_gain)

    def resolve(name: str, payloads: dict[Any, Any]) -> dict[Any, Any]:
        return resolver(name, payloads) if name == BARRIER else {}

    return StrategyRun(strategy, tasks, models, episodes, contexts, tools.budget, resolve)


def run_strategy(
    strategy: str,
    tasks: list[Task],
    models: Models,
    *,
    seed: int,
    feedback: str,
    config: StrategyConfig,
    reward: RewardConfig | None = None,
    trained: Any = None,
    progress: bool = True,
) -> tuple[list[Trajectory], dict[str, FeedbackSuite]]:
    """Run ``strategy`` on ``tasks``; ``trained`` is what its training wrote (``agent.trained.load_trained``).

    Progress lines (``promis_repro.progress``): tasks done, model calls and tokens so far, elapsed, ETA;
    ``progress=False`` keeps them off the terminal (a log file still gets them).
    """
    run = start_strategy(
        strategy, tasks, models, seed=seed, feedback=feedback, config=config, reward=reward, trained=trained
    )
    return run_together({strategy: run}, progress=progress)[strategy]


def run_together(
    runs: dict[str, StrategyRun], *, progress: bool = True
) -> dict[str, tuple[list[Trajectory], dict[str, FeedbackSuite]]]:
    """Drive several strategies' episodes as one run: requests for the same model share its batches.

    Each episode's outputs are what it gives driven alone: sampling seeds depend on (run seed, task,
    call index), decoding is batch-independent, and each strategy keeps its own budget and its own
    barriers (EPiC's dataset-level stop counts only its own tasks). The generation cache answers a
    prompt asked by several strategies once.
    """
    episodes: dict[tuple[str, str], Episode] = {}
    ledgers: dict[tuple[str, str], Ledger] = {}
    budgets: dict[tuple[str, str], Budget] = {}
    servers: dict[Any, tuple[Models, str]] = {}  # batch key -> a (models, role) that calls that model
    routes: dict[tuple[str, str], Any] = {}  # (strategy, role) -> batch key
    for name, run in runs.items():
        for task_id, episode in run.episodes.items():
            key = (name, task_id)
            episodes[key] = _barriers_named(episode, name)
            ledgers[key] = run.contexts[task_id].ledger
            budgets[key] = run.budget
        for role, model in (("generator", run.models.generator), ("rewriter", run.models.rewriter)):
            if model is not None:
                # generators with equal keys answer alike (CachedGenerator.batch_key): one batch for them all,
                # where a row's text does not depend on its batch mates; elsewhere (a GPU, vLLM, CodeT5+'s
                # padded batches) each strategy keeps its own batches, as its cell alone would have them
                batch_key = getattr(model, "batch_key", id(model))
                if not getattr(model, "batch_independent", False):
                    batch_key = (name, batch_key)
                routes[(name, role)] = batch_key
                servers.setdefault(batch_key, (run.models, role))
    total = len(episodes)
    label = next(iter(runs)) if len(runs) == 1 else f"{len(runs)} strategies"
    report = Progress(label, total, "tasks", terminal=progress)
    counts = {"finished": 0, "model_calls": 0, "tokens": 0}

    def route(key: tuple[str, str], role: str) -> Any:
        if (key[0], role) not in routes:
            raise UserError(f"strategy {key[0]} needs a {role} model (--{role})")
        return routes[(key[0], role)]

    def call(batch_key: Any, prompts: list[ChatPrompt], settings: list[DecodingSettings]) -> list[Completion]:
        models, role = servers[batch_key]
        completions = models.call(role, prompts, settings)
        counts["model_calls"] += len(completions)
        counts["tokens"] += sum(c.prompt_tokens + c.completion_tokens for c in completions)
        report.update(counts["finished"], model_calls=counts["model_calls"], tokens=counts["tokens"])
        return completions

    def finished(n: int) -> None:
        counts["finished"] += n
        report.update(counts["finished"], model_calls=counts["model_calls"], tokens=counts["tokens"])

    def resolve(name: str, payloads: dict[Any, Any]) -> dict[Any, Any]:
        strategy, _, barrier = name.partition(_BARRIER_SEPARATOR)
        return runs[strategy].resolve_barrier(barrier, payloads)

    report.update(0)
    results = drive(
        episodes, call, ledgers, budgets, resolve_barrier=resolve, progress=finished, route=route, mixed_settings=True
    )
    report.finish()
    return {
        name: run.outcome({task_id: results[(name, task_id)] for task_id in run.episodes}) for name, run in runs.items()
    }


_BARRIER_SEPARATOR = "\x1f"


def _barriers_named(episode: Episode, strategy: str) -> Episode:
    """``episode`` with its barriers renamed ``{strategy}<US>{name}``: strategies driven together meet only
    their own tasks at a barrier."""
    try:
        request = next(episode)
        while True:
            if isinstance(request, Barrier):
                request = Barrier(f"{strategy}{_BARRIER_SEPARATOR}{request.name}", request.payload)
            reply = yield request
            request = episode.send(reply)
    except StopIteration as stop:
        return stop.value
