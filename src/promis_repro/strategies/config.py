"""Strategy settings: one dataclass, defaults documented, overridable from a YAML mapping."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from promis_repro.errors import UserError
from promis_repro.settings import from_mapping
from promis_repro.strategies.rewrite import DEFAULT_TEMPLATE, EPIC_TEMPLATE


@dataclass(frozen=True)
class StrategyConfig:
    # budgets (per task): every iterative strategy stops when one is spent
    max_generator_calls: int = 10  # code-writing calls of the generator (reflections count too)
    max_rewriter_calls: int = 10
    max_steps: int = 10  # random_hybrid's and ppo's episode length (the paper's 10)
    # generator decoding (the paper's public config: temperature 0.7, top_p 0.9)
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512
    # rewriter decoding (EPiC samples its rewrites at 0.9)
    rewriter_temperature: float = 0.7
    rewriter_top_p: float = 0.9
    rewriter_max_new_tokens: int = 256
    rewrite_template: str = DEFAULT_TEMPLATE
    # action 1 (EPiC's operator)
    mutation_probability: float = 0.25
    mutation_variants: int = 3
    mutation_threshold: float = 0.8
    mutation_top_k: int = 10
    embedder: str = "all-minilm-l6-v2"
    # feedback: selfgen asks for this many tests once per task (EPiC writes 10, Reflexion 1; others 5)
    selfgen_tests: dict[str, int] = field(default_factory=lambda: {"epic": 10, "reflexion": 1, "default": 5})
    # epic
    epic_accept_original: float = 0.8
    epic_population: int = 4  # LLM rewrites beside the original
    epic_accept_best: float = 0.6
    epic_generations: int = 4
    epic_min_gain: float = 0.015
    epic_rewriter_temperature: float = 0.9  # EPiC samples its rewrites at 0.9
    epic_rewrite_template: str = EPIC_TEMPLATE
    # reflexion
    # None: the generator budget (equal budgets); counts the first implementation (Reflexion's example script: 2)
    reflexion_max_iters: int | None = None
    reflexion_temperature: float = 0.0  # Reflexion writes code greedily
    # self_correct
    self_correct_turns: int | None = None  # None: the generator budget (SCoRe's own protocol: 2)
    # compose: actions edit the current prompt (True) or the original one (the public code)
    compose: bool = True
    # lpo
    lpo: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        keys = ("max_generator_calls", "max_rewriter_calls", "max_steps", "max_new_tokens", "mutation_variants")
        for key in (*keys, "reflexion_max_iters", "self_correct_turns"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"{where}: {key} must be an integer >= 1")

    def iterations(self, limit: int | None) -> int:
        """A strategy's own iteration limit, or the generator budget when it has none (equal budgets)."""
        return self.max_generator_calls if limit is None else limit

    def selfgen_count(self, strategy: str) -> int:
        return int(self.selfgen_tests.get(strategy, self.selfgen_tests.get("default", 5)))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = ("ppo", "grpo", "self_correct_rl", "levels")


@dataclass(frozen=True)
class StrategyFile:
    """A strategy settings file (``--config``): strategy keys, a ``reward:`` mapping, ``ppo:``/``grpo:``/
    ``self_correct_rl:`` sections and ``levels:`` (how evaluation and the multi reward measure the levels:
    ``evaluation/levels.py``)."""

    config: StrategyConfig
    reward: Any  # promis_repro.rewards.RewardConfig
    sections: dict[str, dict[str, Any]]


def parse_strategy_file(values: dict[str, Any] | None, where: str = "strategy config") -> StrategyFile:
    """Split and check a strategy settings mapping; every error is one line naming ``where`` and the key."""
    from promis_repro.evaluation.levels import level_settings
    from promis_repro.rewards import RewardConfig

    values = dict(values or {})
    sections = {}
    for name in SECTIONS:
        section = values.pop(name, None) or {}
        if not isinstance(section, dict):
            raise UserError(f"{where}: {name} must be a mapping")
        sections[name] = section
    reward_values = values.pop("reward", None) or {}
    if not isinstance(reward_values, dict):
        raise UserError(f"{where}: reward must be a mapping")
    config = from_mapping(StrategyConfig, values, where)
    levels = level_settings(sections["levels"], f"{where}: levels")
    try:
        reward = RewardConfig(**reward_values, levels=levels)
    except (TypeError, UserError) as exc:
        raise UserError(f"{where}: reward: {exc}") from None
    return StrategyFile(config, reward, sections)


def load_strategy_file(
    path: str | None, *, budget: int | None = None, max_new_tokens: int | None = None
) -> StrategyFile:
    """A ``--config`` file (none: the defaults), with the command line's ``--budget``/``--max-new-tokens`` on top."""
    from promis_repro.io import read_yaml_mapping

    values = read_yaml_mapping(path, "strategy config")
    if budget is not None:
        values["max_generator_calls"] = budget
    if max_new_tokens is not None:
        values["max_new_tokens"] = max_new_tokens
    return parse_strategy_file(values, where=path or "strategy config")
