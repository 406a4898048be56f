"""Every strategy of the grid (``grid.STRATEGIES``) and how its episode function is made.

An entry's ``make_episode`` takes what ``promis-repro train --agent NAME`` wrote, as
``agent.trained.load_trained`` loads it (the lpo instruction, the PPO policy, a LoRA adapter's
directory), or ``None`` for a strategy that needs no training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from promis_repro import grid
from promis_repro.errors import UserError
from promis_repro.strategies import baselines
from promis_repro.strategies.actions import EpisodeContext
from promis_repro.strategies.engine import Episode
from promis_repro.strategies.epic import epic
from promis_repro.strategies.lpo import lpo_episode
from promis_repro.strategies.policy import policy_episode
from promis_repro.strategies.reflexion import reflexion

EpisodeFunction = Callable[[EpisodeContext], Episode]


@dataclass(frozen=True)
class Strategy:
    name: str
    make_episode: Callable[[Any], EpisodeFunction]  # from what training wrote (None when untrained)
    summary: str
    uses_rewriter: bool = False
    trained: bool = False  # needs what ``promis-repro train --agent {name}`` wrote (``--trained DIR``)
    rewriter_adapter: bool = False  # its rewriter is the base rewriter with the adapter training wrote
    # its generator is the base generator with the adapter training wrote: it alone changes the generator's weights
    generator_adapter: bool = False


def _untrained(function: EpisodeFunction) -> Callable[[Any], EpisodeFunction]:
    return lambda _trained: function


_ENTRIES = (
    Strategy("direct", _untrained(baselines.direct), "action 0 once"),
    Strategy("ga_once", _untrained(baselines.ga_once), "action 1 once on the original prompt (the paper's row)"),
    Strategy("rewrite_once", _untrained(baselines.rewrite_once), "action 2 once (the paper's row)", True),
    Strategy("ga_only", _untrained(baselines.ga_only), "mutations of the best prompt so far"),
    Strategy("rewrite_only", _untrained(baselines.rewrite_only), "rewrites of the best prompt so far", True),
    Strategy("random_hybrid", _untrained(baselines.random_hybrid), "uniformly random actions", True),
    Strategy("epic", _untrained(epic), "EPiC's evolutionary prompt search", True),
    Strategy("reflexion", _untrained(reflexion), "Reflexion's self-reflection loop"),
    Strategy("ppo", policy_episode, "the trained PPO policy picks each step's action", True, trained=True),
    Strategy("lpo", lpo_episode, "direct generation with the trained instruction", True, trained=True),
    Strategy("self_correct", _untrained(baselines.self_correct), "SCoRe's second-turn self-correction"),
    Strategy(
        "self_correct_rl",
        _untrained(baselines.self_correct_twice),
        "self_correct's 2 turns by the generator with its RL-trained LoRA adapter (it fine-tunes the generator)",
        trained=True,
        generator_adapter=True,
    ),
    Strategy(
        "rl_rewriter",
        _untrained(baselines.rewrite_only),
        "rewrite_only with the GRPO-trained rewriter adapter",
        True,
        trained=True,
        rewriter_adapter=True,
    ),
)
STRATEGIES: dict[str, Strategy] = {entry.name: entry for entry in _ENTRIES}
if tuple(STRATEGIES) != grid.STRATEGIES:  # the grid's vocabulary and this registry must name the same strategies
    raise RuntimeError(f"strategy registry {tuple(STRATEGIES)} differs from grid.STRATEGIES {grid.STRATEGIES}")
if tuple(name for name, entry in STRATEGIES.items() if entry.generator_adapter) != grid.GENERATOR_TRAINING:
    raise RuntimeError(f"generator_adapter strategies differ from grid.GENERATOR_TRAINING {grid.GENERATOR_TRAINING}")


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
