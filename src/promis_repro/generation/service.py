"""Load a generator by registry name, with the generation cache in front of it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator
from typing import Any

from promis_repro.errors import UserError
from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.cache import GenerationCache, cache_key
from promis_repro.generation.registry import ModelSpec, get_model

log = logging.getLogger(__name__)


#: backends kept for the whole process while ``shared_backends()`` is active (a group job's strategies)
_SHARED: dict[str, Any] | None = None


@contextlib.contextmanager
def shared_backends() -> Iterator[None]:
    """Within this block a model (same identity, precision and options) is loaded once and shared.

    A group job (``stages/group.py``) runs every strategy of a model x benchmark x seed in one process;
    without this, each strategy's ``Models`` would load the same weights again. Outside the block
    nothing is kept (a 7B model's memory is released with its strategy).
    """
    global _SHARED
    outer, _SHARED = _SHARED, {} if _SHARED is None else _SHARED
    try:
        yield
    finally:
        _SHARED = outer


def load_backend(spec: ModelSpec, **options: Any) -> Any:
    if _SHARED is None:
        return _load_backend(spec, **options)
    # the whole spec (an adapter's path included), its precision and the loading options
    key = json.dumps(
        {"spec": dataclasses.asdict(spec), "model": spec.generation_identity(), "options": options},
        sort_keys=True,
        default=str,
    )
    if key not in _SHARED:
        _SHARED[key] = _load_backend(spec, **options)
    return _SHARED[key]


def _load_backend(spec: ModelSpec, **options: Any) -> Any:
    if spec.backend in ("transformers-causal", "transformers-seq2seq"):
        from promis_repro.generation.hf import TransformersGenerator

        return TransformersGenerator(spec, **options)
    if spec.backend == "vllm":
        from promis_repro.generation.vllm_backend import VllmGenerator

        return VllmGenerator(spec, **options)
    raise UserError(f"model {spec.name} ({spec.backend}) is not a text generator")


class CachedGenerator:
    """A backend behind the generation cache; the backend is loaded only when a prompt misses."""

    def __init__(self, spec: ModelSpec, cache: GenerationCache | None = None, **options: Any) -> None:
        self.spec = spec
        self.cache = cache or GenerationCache()
        self.options = options
        self._backend: Any = None
        self.model_id = spec.generation_identity()

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = load_backend(self.spec, **self.options)
        return self._backend

    def generate(self, prompts: list[ChatPrompt], settings: DecodingSettings) -> list[Completion]:
        # cache keys use the prompt as the model reads it (chat template
        # applied); rendering needs only the tokenizer, so a run whose prompts
        # all hit the cache never loads the weights
        texts = [self.render(p) for p in prompts]
        keys = [cache_key(self.model_id, text, settings) for text in texts]
        results: list[Completion | None] = [self.cache.get(key) for key in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            fresh = self.backend.generate([prompts[i] for i in missing], settings)
            for index, completion in zip(missing, fresh):
                self.cache.put(keys[index], completion, {"model": self.model_id, "prompt": texts[index]})
                results[index] = completion
        self.cache.log_stats(self.spec.name)
        return [r for r in results if r is not None]

    def render(self, prompt: ChatPrompt) -> str:
        return self.renderer().render(prompt)

    def renderer(self) -> Any:
        if self._backend is not None:
            return self._backend
        if not hasattr(self, "_renderer"):
            self._renderer = TemplateRenderer(self.spec)
        return self._renderer


class TemplateRenderer:
    """Renders prompts with the model's tokenizer only (no weights), so cache hits cost no model load."""

    def __init__(self, spec: ModelSpec) -> None:
        from transformers import AutoTokenizer

        from promis_repro.generation.weights import weights_location

        location, revision = weights_location(spec)
        self.tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
        self.seq2seq = spec.backend == "transformers-seq2seq"

    def render(self, prompt: ChatPrompt) -> str:
        from promis_repro.generation.hf import render_prompt

        return render_prompt(self.tokenizer, prompt, self.seq2seq)


def load_generator(name: str, registry: str | None = None, **options: Any) -> CachedGenerator:
    return CachedGenerator(get_model(name, registry), **options)
