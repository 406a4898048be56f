"""Strategy names and their episode functions; the agent strategies plug in here."""

from __future__ import annotations

from collections.abc import Callable

from promis_repro.errors import UserError
from promis_repro.strategies import baselines
from promis_repro.strategies.actions import EpisodeContext
from promis_repro.strategies.engine import Episode
from promis_repro.strategies.epic import epic
from promis_repro.strategies.reflexion import reflexion

EpisodeFunction = Callable[[EpisodeContext], Episode]

STRATEGIES: dict[str, EpisodeFunction | None] = {
    "direct": baselines.direct,
    "ga_only": baselines.ga_only,
    "rewrite_only": baselines.rewrite_only,
    "random_hybrid": baselines.random_hybrid,
    "epic": epic,
    "reflexion": reflexion,
    "self_correct": baselines.self_correct,
    # these need what ``promis-repro train`` wrote (``--trained DIR``); the runner builds them
    "lpo": None,  # direct generation with the trained instruction
    "ppo": None,  # the trained policy picks each step's action
    "rl_rewriter": baselines.rewrite_only,  # rewrite_only with the GRPO-trained rewriter adapter
}
#: strategies that need a training run's output
NEEDS_TRAINING = ("lpo", "ppo", "rl_rewriter")
#: strategies that use the rewriter model
USES_REWRITER = ("rewrite_only", "random_hybrid", "epic", "lpo", "ppo", "rl_rewriter")


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return name
