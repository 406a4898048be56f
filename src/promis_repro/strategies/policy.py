"""The ``ppo`` strategy: a trained policy picks each step's action from an observation of the episode.

``observe`` is the one observation function of the agent: the training environment
(``agent.env.PromptEnv``) and the test-time episode below both call it on the same episode state,
so what the policy sees at test time is built exactly as what it was trained on.

Features, in order (as in the paper's public code): len(prompt)/1000, words/100, feedback
count/10, step/10, dataset position (the task's index / number of tasks of the run), "def " in
prompt, "class " in prompt, "import " in prompt, len(last feedback)/1000, "error" in the last
feedback. The feedback count equals the step (every step runs its code on the feedback tests once),
as in the public code. With ``embeddings`` on, the unit MiniLM vectors of the current prompt and of
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


def hand_features(prompt: str, feedback_count: int, step: int, position: float, last_feedback: str) -> np.ndarray:
    return np.array(
        [
            len(prompt) / 1000,
            len(prompt.split()) / 100,
            feedback_count / 10,
            step / 10,
            position,
            float("def " in prompt),
            float("class " in prompt),
            float("import " in prompt),
            len(last_feedback) / 1000,
            float("error" in last_feedback.lower()),
        ],
        dtype=np.float32,
    )


def observe(ctx: EpisodeContext, text: str, step: int, last_feedback: str, *, embeddings: bool) -> np.ndarray:
    """The policy's view of an episode after ``step`` steps: the prompt built around ``text``, the last feedback."""
    prompt = ctx.parts.compose(text)
    observation = hand_features(prompt, step, step, ctx.position, last_feedback)
    if embeddings:
        vectors = embed([prompt, last_feedback or "(no feedback yet)"], ctx.config.embedder).reshape(-1)
        observation = np.concatenate([observation, vectors.astype(np.float32)])
    return np.clip(observation, OBSERVATION_LOW, OBSERVATION_HIGH).astype(np.float32)


@dataclass(frozen=True)
class TrainedPolicy:
    """What ``promis-repro train --agent ppo`` produced: a policy with ``predict`` and its observation kind."""

    policy: Any  # a stable-baselines3 policy
    embeddings: bool

    def choose(self, observation: np.ndarray) -> int:
        return int(self.policy.predict(observation, deterministic=True)[0])


def policy_episode(trained: TrainedPolicy) -> Callable[[EpisodeContext], Episode]:
    """At each step the policy picks the action from ``observe``; best candidate by feedback."""

    def episode(ctx: EpisodeContext) -> Episode:
        def choose(text: str, step: int, last_feedback: str) -> int:
            return trained.choose(observe(ctx, text, step, last_feedback, embeddings=trained.embeddings))

        return (yield from stepwise(ctx, choose))

    return episode
