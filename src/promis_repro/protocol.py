"""What the label ``protocol: paper`` claims: the paper's public code's protocol, part by part.

A config or a command that says ``protocol: paper`` must set every part of it; each check names the
setting, what the paper's protocol needs and why, so the label on a table is never an accident.
"""

from __future__ import annotations

from typing import Any

#: (setting, what the paper protocol needs, why), grouped by where the setting lives
RUN_PARTS = (("feedback", "oracle", "the paper's feedback is the hidden tests (leaky)"),)
STRATEGY_PARTS = (
    ("strategy.reward.kind", "binary", "the public code's reward is +1/-0.1"),
    ("strategy.reward.binary_pass", 1.0, "the public code's reward for a pass is +1"),
    ("strategy.reward.binary_fail", -0.1, "the public code's reward otherwise is -0.1"),
    ("strategy.compose", False, "the public code applies each action to the original prompt"),
)
PPO_PARTS = (
    ("strategy.ppo.policy", "shared", "the public code's actor-critic shares a 128-128 tanh trunk"),
    ("strategy.ppo.observation", "position", "the public code observes the dataset position"),
    ("strategy.ppo.truncation_is_terminal", True, "the public code's returns end at the step limit"),
    ("strategy.ppo.gae_lambda", 1.0, "the public code's returns are Monte-Carlo returns"),
)
TRAIN_PARTS = (("train.feedback", "all", "the public code trains on feedback and reward from all of the tests"),)


def paper_protocol_problem(
    *,
    feedback: str | None = None,
    strategy: Any = None,  # strategies.config.StrategyFile
    ppo: Any = None,  # agent.ppo.PPOConfig
    train_feedback: str | None = None,
) -> str | None:
    """The first setting (of those given) that differs from the paper's protocol, as one line; else None."""
    values: dict[str, Any] = {}
    if feedback is not None:
        values["feedback"] = feedback
    if strategy is not None:
        values |= {
            "strategy.reward.kind": strategy.reward.kind,
            "strategy.reward.binary_pass": strategy.reward.binary_pass,
            "strategy.reward.binary_fail": strategy.reward.binary_fail,
            "strategy.compose": strategy.config.compose,
        }
    if ppo is not None:
        values |= {key: getattr(ppo, key.rsplit(".", 1)[-1]) for key, *_ in PPO_PARTS}
    if train_feedback is not None:
        values["train.feedback"] = train_feedback
    for key, wanted, why in (*RUN_PARTS, *STRATEGY_PARTS, *PPO_PARTS, *TRAIN_PARTS):
        if key in values and values[key] != wanted:
            return f"{key}: protocol: paper needs {wanted!r} ({why}), got {values[key]!r}"
    return None
