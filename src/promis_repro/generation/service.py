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
from promis_repro.generation.cache import GenerationCache, RenderCache, cache_key
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


def backend_key(spec: ModelSpec, **options: Any) -> str:
    """What makes two backends the same: the whole spec (an adapter's path included), its precision and
    the loading options."""
    return json.dumps(
        {"spec": dataclasses.asdict(spec), "model": spec.generation_identity(), "options": options},
        sort_keys=True,
        default=str,
    )


def load_backend(spec: ModelSpec, **options: Any) -> Any:
    if _SHARED is None:
        return _load_backend(spec, **options)
    key = backend_key(spec, **options)
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
        #: generators with equal keys answer alike, so their requests may share a batch (runner.run_together)
        self.batch_key = backend_key(spec, **options)
        self.rendered = RenderCache(self.cache.root.with_name(f"{self.cache.root.name}-rendered"))
        # what a prompt's rendering depends on: the tokenizer and chat template (the weights' identity)
        self._render_identity = {**spec.identity(), "backend": spec.backend, "prompt_format": spec.prompt_format}

    @property
    def batch_independent(self) -> bool:
        """Whether a prompt's completion is the same whatever shares its batch: our row-aligned causal
        decoding on a CPU (``generation/decoding.py``); not a GPU's, vLLM's or a seq2seq model's padded batches."""
        from promis_repro.generation.registry import gpu_available

        return self.spec.backend == "transformers-causal" and not gpu_available()

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = load_backend(self.spec, **self.options)
        return self._backend

    def generate(
        self, prompts: list[ChatPrompt], settings: DecodingSettings | list[DecodingSettings]
    ) -> list[Completion]:
        """``settings``: one for every prompt, or one per prompt (``runner.run_together``'s batches)."""
        # cache keys use the prompt as the model reads it (chat template
        # applied); rendering needs only the tokenizer, so a run whose prompts
        # all hit the cache never loads the weights
        per_row = [settings] * len(prompts) if isinstance(settings, DecodingSettings) else list(settings)
        texts = [self.render(p) for p in prompts]
        keys = [cache_key(self.model_id, text, one) for text, one in zip(texts, per_row, strict=True)]
        results: list[Completion | None] = [self.cache.get(key) for key in keys]
        # a prompt asked twice in one batch (strategies driven together) is generated once
        first: dict[str, int] = {}
        for i, result in enumerate(results):
            if result is None:
                first.setdefault(keys[i], i)
        missing = list(first.values())
        if missing:
            fresh = self._generate([prompts[i] for i in missing], [per_row[i] for i in missing])
            generated = {}
            for index, completion in zip(missing, fresh, strict=True):
                self.cache.put(keys[index], completion, {"model": self.model_id, "prompt": texts[index]})
                generated[keys[index]] = results[index] = completion
            for i, result in enumerate(results):
                if result is None:  # a repeat: marked a cache hit, as a later call asking it would read it
                    completion = generated[keys[i]]
                    results[i] = dataclasses.replace(completion, cached=True, meta=dict(completion.meta))
        self.cache.log_stats(self.spec.name)
        return [r for r in results if r is not None]

    def _generate(self, prompts: list[ChatPrompt], settings: list[DecodingSettings]) -> list[Completion]:
        """Rows of different settings in one batch where the backend can (``mixed_settings``) and a row's
        text does not depend on its batch mates, else one batch per settings (as each strategy alone)."""
        distinct = list(dict.fromkeys(settings))
        if len(distinct) == 1:
            return self.backend.generate(prompts, distinct[0])
        if getattr(self.backend, "mixed_settings", False) and self.batch_independent:
            return self.backend.generate(prompts, settings)
        results: list[Completion] = [None] * len(prompts)  # type: ignore[list-item]
        for one in distinct:
            indices = [i for i, each in enumerate(settings) if each == one]
            answers = self.backend.generate([prompts[i] for i in indices], one)
            for index, completion in zip(indices, answers, strict=True):
                results[index] = completion
        return results

    def render(self, prompt: ChatPrompt) -> str:
        key = RenderCache.key(self._render_identity, prompt)
        text = self.rendered.get(key)
        if text is None:
            text = self.renderer().render(prompt)
            self.rendered.put(key, text)
        return text

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
