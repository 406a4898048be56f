"""The three step rewards, written out (the referees asked for the formula).

``binary`` (the paper's public code): r_t = +1 if every feedback test passes, else -0.1.
``shaped`` (ours): r_t = w_pass * 1[all pass] + w_soft * (soft_t - soft_{t-1}) - w_step,
where soft_t is the fraction of feedback tests the step's code passes and soft_0 := 0
before the first step.
``multi`` (multi-level): r_t = M_t - M_{t-1}, M_0 := 0, where M_t = sum_l w_l * level_l of the step's
code (``evaluation/levels.py``: syntax, execution, tests, quality, efficiency on the reward's tests, a
null level counting 0); an episode's return is therefore its last code's M. The GRPO rewriter's
reward under ``multi`` is M of the code the frozen generator writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from promis_repro.errors import UserError
from promis_repro.evaluation.levels import DEFAULT_WEIGHTS, LevelSettings, check_weights

REWARD_KINDS = ("binary", "shaped", "multi")


@dataclass(frozen=True)
class RewardConfig:
    kind: str = "shaped"
    w_pass: float = 1.0
    w_soft: float = 0.5
    w_step: float = 0.05
    binary_pass: float = 1.0
    binary_fail: float = -0.1
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))  # multi: per level
    levels: LevelSettings = field(default_factory=LevelSettings)  # how the levels are measured (``levels:``)

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise UserError(f"unknown reward {self.kind!r}; known: {', '.join(REWARD_KINDS)}")
        if not isinstance(self.weights, dict):
            raise UserError("weights must be a mapping of level to weight")
        object.__setattr__(self, "weights", check_weights(self.weights, "weights"))

    def formula(self) -> str:
        if self.kind == "binary":
            return f"r_t = {self.binary_pass:+g} if all feedback tests pass else {self.binary_fail:+g}"
        if self.kind == "multi":
            terms = " + ".join(f"{w:g}*{level}" for level, w in self.weights.items())
            return f"r_t = M_t - M_(t-1), M = {terms} (null level = 0, M_0 = 0)"
        return (
            f"r_t = {self.w_pass:g}*1[all pass] + {self.w_soft:g}*(soft_t - soft_(t-1)) - {self.w_step:g} (soft_0 = 0)"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"formula": self.formula()}


def step_reward(
    config: RewardConfig,
    passed: bool,
    soft: float,
    previous_soft: float,
    multi: float | None = None,
    previous_multi: float = 0.0,
) -> float:
    """One step's reward; ``multi``/``previous_multi``: M of this step's and the last step's code (kind multi)."""
    if config.kind == "binary":
        return config.binary_pass if passed else config.binary_fail
    if config.kind == "multi":
        if multi is None:
            raise ValueError("the multi reward needs the step's multi-level score")
        return multi - previous_multi
    return config.w_pass * float(passed) + config.w_soft * (soft - previous_soft) - config.w_step
