"""Models stage: make a model's weights available locally and record its identity."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json


def fetch(model: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Convert the packaged GGUF or download from the hub; write ``{model, identity, location}`` to ``out``."""
    from promis_repro.generation.registry import get_model

    spec = get_model(model)
    if spec.source == "gguf-package":
        from promis_repro.generation.weights import convert_gguf

        location = str(convert_gguf(spec))
    elif spec.source == "hub":
        spec.require_pinned()
        try:
            from huggingface_hub import snapshot_download

            location = snapshot_download(spec.hub_id, revision=spec.revision)
        except Exception as exc:
            raise UserError(f"model {model}: could not download {spec.hub_id}@{spec.revision}: {exc}") from None
    else:
        from promis_repro.embedding import embedder_source

        location = embedder_source(model)
    record = {"model": model, "identity": spec.identity(), "location": location}
    atomic_write_json(out, record)
    print(f"{model}: {location} -> {out}")
    return record


def lock(models: list[str] | None = None, out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Resolve each hub model's branch to the commit it points at now and write the lock (online, once).

    Entries of models not named are kept, so a lock can be extended one model at a time.
    """
    from promis_repro.generation.registry import lock_path, registry_path, write_lock

    target = Path(out) if out else lock_path(registry_path())
    pins = write_lock(target, models)
    for name in models or sorted(pins):
        entry = pins[name]
        print(f"{name}: {entry['hub_id']}@{entry['branch']} -> {entry['revision']}")
    return pins
