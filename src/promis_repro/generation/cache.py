"""Content-addressed generation cache, safe for many SLURM jobs on a shared filesystem.

Key: sha256 of (model identity incl. revision, the full prompt text the model
reads, the decoding settings, the seed; greedy decoding without seed or top_p, which it never reads).
Entries (``io.ChecksummedEntries``) are written to a temporary file in the same directory and renamed
into place (atomic on POSIX and NFS), no database and no locks. Each entry repeats its key and carries a
checksum of its payload; a truncated, corrupt or mismatched entry is treated
as a miss, removed and regenerated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from promis_repro.generation.base import Completion, DecodingSettings
from promis_repro.io import CacheStats, ChecksummedEntries, cache_root

log = logging.getLogger(__name__)

FORMAT = 1


def cache_key(model_id: dict[str, Any], prompt_text: str, settings: DecodingSettings) -> str:
    decoding = settings.as_dict()
    if settings.greedy:
        # greedy decoding reads neither the seed nor top_p: every seed and strategy asking the same prompt
        # greedily shares one entry (a tiny grid's seeds and strategies mostly start from the same prompt)
        decoding.update(seed=None, top_p=None, temperature=0.0)
    material = json.dumps(
        {"format": FORMAT, "model": model_id, "prompt": prompt_text, "settings": decoding},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


class GenerationCache:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "generations"
        self.entries = ChecksummedEntries(self.root, "completion")
        self.stats = CacheStats()

    def get(self, key: str) -> Completion | None:
        completion, corrupt = self.entries.read(key, lambda payload: Completion(**payload))
        if completion is None:
            if corrupt:
                log.warning("generation cache entry %s is corrupt (%s); regenerating", self.entries.path(key), corrupt)
                self.stats.corrupt += 1
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        completion.cached = True
        return completion

    def put(self, key: str, completion: Completion, meta: dict[str, Any]) -> None:
        payload = completion.as_dict()
        payload["cached"] = False
        self.entries.write(key, payload, **meta)

    def log_stats(self, label: str) -> None:
        s = self.stats
        log.info(
            "%s: generation cache %d hits, %d misses (%d corrupt entries replaced)", label, s.hits, s.misses, s.corrupt
        )


RENDER_FORMAT = 2  # 2: entries in the shared ChecksummedEntries layout


@functools.cache
def _renderer_version() -> str:
    """The transformers version and a digest of ``hf.render_prompt``'s source: a changed renderer misses."""
    import inspect
    from importlib.metadata import version

    from promis_repro.generation import hf

    source = inspect.getsource(hf.render_prompt)
    return f"{version('transformers')}:{hashlib.sha256(source.encode()).hexdigest()[:16]}"


class RenderCache:
    """The text a model reads for a prompt (its chat template applied), by model and prompt.

    Rendering needs the model's tokenizer, which needs transformers (~3 s to import and load); a job
    whose prompts were all rendered and generated before (a one-cell rerun) then reads both caches and
    never imports it. The key holds what the text depends on: the model's identity (its tokenizer and
    chat template come with its weights), its backend and prompt format, the transformers version, a
    digest of ``hf.render_prompt``'s source and ``RENDER_FORMAT``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "rendered"
        self.entries = ChecksummedEntries(self.root, "text")

    @staticmethod
    def key(model: dict[str, Any], prompt: Any) -> str:
        material = json.dumps(
            {
                "format": RENDER_FORMAT,
                "renderer": _renderer_version(),
                "model": model,
                "messages": [list(message) for message in prompt.messages],
                "text": prompt.text,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        text, _ = self.entries.read(key, str)  # a corrupt entry is removed and rendered again
        return text

    def put(self, key: str, text: str) -> None:
        self.entries.write(key, text)
