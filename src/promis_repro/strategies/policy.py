"""The ``ppo`` strategy: a trained policy picks each step's action from an observation of the episode.

``observe`` is the one observation function of the agent: the training environment
(``agent.env.PromptEnv``) and the test-time episode below both call it on the same episode state,
so what the policy sees at test time is built exactly as what it was trained on.

Features, in order (as in the paper's public code): len(prompt)/1000, words/100, feedback
count/10, step/10, a task feature, "def " in prompt, "class " in prompt, "import " in prompt,
len(last feedback)/1000, "error" in the last feedback. The feedback count equals the step (every
step runs its code on the feedback tests once), as in the public code. The task feature (``kind``):
``visible`` (ours) 1.0 when the task has visible tests to run and 0.0 when it has none (31 HumanEval+
tasks at test time, some training episodes by design), which means the same in training and at test
time; ``position`` (the paper's protocol) the public code's "dataset position", the task's index
divided by the number of tasks of the run, which at test time only says where a task sits in a
benchmark file. With ``embeddings`` on, the unit MiniLM vectors of the current prompt and of
the last feedback follow (2 x 384 numbers). Values are clipped to [-1, 100].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from promis_repro.embedding import embed
from promis_repro.strategies.actions import EpisodeContext
from promis_repro.strategies.baselines import stepwise
from promis_repro.strategies.engine import Episode

N_FEATURES = 10
EMBEDDING_DIM = 384
OBSERVATION_LOW, OBSERVATION_HIGH = -1.0, 100.0


def observation_size(embeddings: bool) -> int:
    return N_FEATURES + (2 * EMBEDDING_DIM if embeddings else 0)


def hand_features(prompt: str, feedback_count: int, step: int, task_feature: float, last_feedback: str) -> np.ndarray:
    return np.array(
        [
            len(prompt) / 1000,
            len(prompt.split()) / 100,
            feedback_count / 10,
            step / 10,
            task_feature,
            float("def " in prompt),
            float("class " in prompt),
            float("import " in prompt),
            len(last_feedback) / 1000,
            float("error" in last_feedback.lower()),
        ],
        dtype=np.float32,
    )


OBSERVATION_KINDS = ("visible", "position")


def observe(
    ctx: EpisodeContext, text: str, step: int, last_feedback: str, *, embeddings: bool, kind: str = "visible"
) -> np.ndarray:
    """The policy's view of an episode after ``step`` steps: the prompt built around ``text``, the last feedback."""
    prompt = ctx.parts.compose(text)
    task_feature = ctx.position if kind == "position" else float(ctx.suite.n_tests > 0)
    observation = hand_features(prompt, step, step, task_feature, last_feedback)
    if embeddings:
        vectors = embed([prompt, last_feedback or "(no feedback yet)"], ctx.config.embedder).reshape(-1)
        observation = np.concatenate([observation, vectors.astype(np.float32)])
    return np.clip(observation, OBSERVATION_LOW, OBSERVATION_HIGH).astype(np.float32)


@dataclass(frozen=True)
class TrainedPolicy:
    """What ``promis-repro train --agent ppo`` produced: a policy with ``predict`` and its observation kind."""

    policy: Any  # a stable-baselines3 policy
    embeddings: bool
    observation: str = "visible"  # the task feature it was trained with (OBSERVATION_KINDS)

    def choose(self, observation: np.ndarray) -> int:
        return int(self.policy.predict(observation, deterministic=True)[0])


def policy_episode(trained: TrainedPolicy) -> Callable[[EpisodeContext], Episode]:
    """At each step the policy picks the action from ``observe``; best candidate by feedback."""

    def episode(ctx: EpisodeContext) -> Episode:
        def choose(text: str, step: int, last_feedback: str) -> int:
            features = observe(ctx, text, step, last_feedback, embeddings=trained.embeddings, kind=trained.observation)
            return trained.choose(features)

        return (yield from stepwise(ctx, choose))

    return episode
