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
    "lpo": None,  # needs a trained instruction: built by the runner
    "ppo": None,  # needs a trained policy (the agent)
    "rl_rewriter": None,  # needs a trained rewriter adapter (the agent)
}
#: strategies that use the rewriter model
USES_REWRITER = ("rewrite_only", "random_hybrid", "epic", "lpo", "ppo", "rl_rewriter")
#: the agent strategies register a factory here: (run options) -> episode function
AGENT_FACTORIES: dict[str, Callable[..., EpisodeFunction]] = {}


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return name
