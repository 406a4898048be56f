"""Content-addressed generation cache, safe for many SLURM jobs on a shared filesystem.

Key: sha256 of (model identity incl. revision, the full prompt text the model
reads, the decoding settings, the seed; greedy decoding without seed or top_p, which it never reads).
temporary file in the same directory and renamed into place (atomic on POSIX
and NFS), no database and no locks. Each entry repeats its key and carries a
checksum of its payload; a truncated, corrupt or mismatched entry is treated
as a miss, removed and regenerated.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promis_repro.generation.base import Completion, DecodingSettings
from promis_repro.io import atomic_write_text, cache_root

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


def _checksum(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0


class GenerationCache:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "generations"
        self.stats = CacheStats()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
            payload = entry["completion"]
            if entry.get("key") != key or entry.get("checksum") != _checksum(payload):
                raise ValueError("key or checksum mismatch")
            completion = Completion(**payload)
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("generation cache entry %s is corrupt (%s); regenerating", path, exc)
            self.stats.corrupt += 1
            self.stats.misses += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self.stats.hits += 1
        completion.cached = True
        return completion

    def put(self, key: str, completion: Completion, meta: dict[str, Any]) -> None:
        payload = completion.as_dict()
        payload["cached"] = False
        entry = {"key": key, "checksum": _checksum(payload), "completion": payload, **meta}
        atomic_write_text(self.path(key), json.dumps(entry, ensure_ascii=False))

    def log_stats(self, label: str) -> None:
        s = self.stats
        log.info(
            "%s: generation cache %d hits, %d misses (%d corrupt entries replaced)", label, s.hits, s.misses, s.corrupt
        )


RENDER_FORMAT = 1


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

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            entry = json.loads(self.path(key).read_text())
            if entry["key"] != key or entry["checksum"] != hashlib.sha256(entry["text"].encode()).hexdigest():
                raise ValueError("key or checksum mismatch")
            return str(entry["text"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                self.path(key).unlink()
            return None

    def put(self, key: str, text: str) -> None:
        entry = {"key": key, "checksum": hashlib.sha256(text.encode()).hexdigest(), "text": text}
        atomic_write_text(self.path(key), json.dumps(entry, ensure_ascii=False))
