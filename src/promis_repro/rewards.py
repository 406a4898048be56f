"""The two step rewards, written out (the referees asked for the formula).

``binary`` (the paper's public code): r_t = +1 if every feedback test passes, else -0.1.
``shaped`` (ours): r_t = w_pass * 1[all pass] + w_soft * (soft_t - soft_{t-1}) - w_step,
where soft_t is the fraction of feedback tests the step's code passes and soft_0 := 0
before the first step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from promis_repro.errors import UserError

REWARD_KINDS = ("binary", "shaped")


@dataclass(frozen=True)
class RewardConfig:
    kind: str = "shaped"
    w_pass: float = 1.0
    w_soft: float = 0.5
    w_step: float = 0.05
    binary_pass: float = 1.0
    binary_fail: float = -0.1

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise UserError(f"unknown reward {self.kind!r}; known: {', '.join(REWARD_KINDS)}")

    def formula(self) -> str:
        if self.kind == "binary":
            return f"r_t = {self.binary_pass:+g} if all feedback tests pass else {self.binary_fail:+g}"
        return (
            f"r_t = {self.w_pass:g}*1[all pass] + {self.w_soft:g}*(soft_t - soft_(t-1)) - {self.w_step:g} (soft_0 = 0)"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"formula": self.formula()}


def step_reward(config: RewardConfig, passed: bool, soft: float, previous_soft: float) -> float:
    if config.kind == "binary":
        return config.binary_pass if passed else config.binary_fail
    return config.w_pass * float(passed) + config.w_soft * (soft - previous_soft) - config.w_step
