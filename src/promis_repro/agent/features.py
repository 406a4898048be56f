"""The agent's observation: the public code's 10 hand-made features, optionally with MiniLM embeddings.

Features, in order (as in the paper's public code): len(prompt)/1000, words/100,
feedback count/10, step/10, dataset position (index/len), "def " in prompt,
"class " in prompt, "import " in prompt, len(last feedback)/1000, "error" in
last feedback. With ``embeddings`` on, the unit MiniLM vectors of the current
prompt and of the last feedback follow (2 x 384 numbers).
"""

from __future__ import annotations

import numpy as np

from promis_repro.embedding import embed

N_FEATURES = 10
EMBEDDING_DIM = 384


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


def observe(
    prompt: str,
    feedback_count: int,
    step: int,
    position: float,
    last_feedback: str,
    *,
    embeddings: bool = False,
    embedder: str = "all-minilm-l6-v2",
) -> np.ndarray:
    features = hand_features(prompt, feedback_count, step, position, last_feedback)
    if not embeddings:
        return features
    vectors = embed([prompt, last_feedback or "(no feedback yet)"], embedder).reshape(-1)
    return np.concatenate([features, vectors.astype(np.float32)])
