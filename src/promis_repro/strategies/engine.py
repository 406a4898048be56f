"""Episodes as coroutines, their budgets and cost ledger, and a driver that batches model calls across tasks.

A strategy's episode for one task is a Python generator: it yields model
requests (``Generate``) and barrier points (``Barrier``) and returns its
``Trajectory``. ``drive`` runs the episodes of many tasks together, sending
every request that is pending at the same time to the model as one batch, so a
GPU sees batches while each strategy reads as sequential code. Sampling seeds
depend on (run seed, task, call index), never on batch composition, so a run is
reproducible whatever the batch size.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings


class BudgetExceeded(RuntimeError):
    """A strategy asked for a call its budget does not allow (a bug in the strategy)."""


@dataclass(frozen=True)
class Generate:
    role: str  # "generator" | "rewriter"
    prompt: ChatPrompt
    settings: DecodingSettings
    purpose: str  # code | tests | reflection | rewrite | debug | optimize


@dataclass(frozen=True)
class Barrier:
    """Wait until every live episode of the run reaches a barrier of the same name, then get a reply."""

    name: str
    payload: Any


Request = Generate | Barrier
Episode = Generator[Request, Any, "Trajectory"]


@dataclass(frozen=True)
class Budget:
    generator_calls: int = 10
    rewriter_calls: int = 10

    def limit(self, role: str) -> int:
        return self.generator_calls if role == "generator" else self.rewriter_calls


@dataclass
class Ledger:
    """Calls, tokens and model seconds per role and purpose, for one task."""

    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    prompt_tokens: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    completion_tokens: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cache_hits: int = 0

    def record(self, request: Generate, completion: Completion) -> None:
        key = f"{request.role}:{request.purpose}"
        self.calls[key] += 1
        self.prompt_tokens[key] += completion.prompt_tokens
        self.completion_tokens[key] += completion.completion_tokens
        # the seconds the model took when it generated this text (also for a cache hit), so cost is reproducible
        self.seconds[key] += completion.seconds
        self.cache_hits += int(completion.cached)

    def count(self, role: str, budgeted_only: bool = True) -> int:
        # the selfgen test-writing call is counted in cost but not against the code budget
        counted = [k for k in self.calls if k.startswith(role + ":") and not (budgeted_only and k.endswith(":tests"))]
        return sum(self.calls[k] for k in counted)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "prompt_tokens": dict(self.prompt_tokens),
            "completion_tokens": dict(self.completion_tokens),
            "model_seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "generator_calls": self.count("generator", budgeted_only=False),
            "rewriter_calls": self.count("rewriter", budgeted_only=False),
            "tokens": sum(self.prompt_tokens.values()) + sum(self.completion_tokens.values()),
            "cache_hits": self.cache_hits,
        }


@dataclass
class Trajectory:
    task_id: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    final_code: str = ""
    final_step: int | None = None
    final_fitness: float | None = None
    ledger: Ledger = field(default_factory=Ledger)
    info: dict[str, Any] = field(default_factory=dict)


def derive_seed(*parts: object) -> int:
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


ModelCall = Callable[[Any, list[ChatPrompt], Any], list[Completion]]  # settings: one, or one per prompt
BarrierResolver = Callable[[str, dict[Any, Any]], dict[Any, Any]]
#: which model serves an episode's request: (episode key, role) -> a hashable the model call receives
Route = Callable[[Any, str], Any]


def drive(
    episodes: dict[Any, Episode],
    call_model: ModelCall,
    ledgers: dict[Any, Ledger],
    budgets: Budget | dict[Any, Budget],
    resolve_barrier: BarrierResolver | None = None,
    progress: Callable[[int], None] | None = None,
    route: Route | None = None,
    mixed_settings: bool = False,
) -> dict[Any, Trajectory]:
    """Run episodes to completion; model requests pending together are batched by (model, settings).

    ``route``: the model an episode's request goes to, passed to ``call_model`` in place of the role
    (default: the role). Episodes of several strategies driven together (``runner.run_together``) route
    to the same model when they share it, so their requests share its batches. ``budgets``: one budget
    for every episode, or one per episode key. ``mixed_settings``: a model's pending requests form one
    batch whatever their settings, and ``call_model`` gets one settings per prompt (a list).
    """
    pending: dict[Any, Request] = {}
    results: dict[Any, Trajectory] = {}

    def budget(key: Any) -> Budget:
        return budgets[key] if isinstance(budgets, dict) else budgets

    def advance(key: Any, value: Any) -> None:
        try:
            request = episodes[key].send(value)
        except StopIteration as stop:
            results[key] = stop.value
            pending.pop(key, None)
            if progress:
                progress(1)
            return
        if isinstance(request, Generate):
            used = ledgers[key].count(request.role)
            if request.purpose == "tests":
                if ledgers[key].calls.get(f"{request.role}:tests", 0) >= 1:
                    raise BudgetExceeded(f"{key}: only one test-writing call per task")
            elif used >= budget(key).limit(request.role):
                limit = budget(key).limit(request.role)
                raise BudgetExceeded(f"{key}: {request.role} budget of {limit} calls is spent")
        pending[key] = request

    for key in list(episodes):
        advance(key, None)
    while pending:
        calls = {k: r for k, r in pending.items() if isinstance(r, Generate)}
        if calls:
            groups: dict[tuple[Any, DecodingSettings | None], list[Any]] = defaultdict(list)
            for key, request in calls.items():
                model = route(key, request.role) if route else request.role
                groups[(model, None if mixed_settings else request.settings)].append(key)
            for (model, settings), keys in groups.items():
                asked = settings if settings is not None else [calls[k].settings for k in keys]
                completions = call_model(model, [calls[k].prompt for k in keys], asked)
                for key, completion in zip(keys, completions, strict=True):
                    ledgers[key].record(calls[key], completion)
                    advance(key, completion)
            continue
        # every live episode waits at a barrier: resolve them together, one name at a time
        by_name: dict[str, dict[Any, Any]] = defaultdict(dict)
        for key, request in pending.items():
            assert isinstance(request, Barrier)
            by_name[request.name][key] = request.payload
        name, payloads = next(iter(by_name.items()))
        replies = resolve_barrier(name, payloads) if resolve_barrier else dict.fromkeys(payloads)
        for key in payloads:
            advance(key, replies.get(key))
    return results
