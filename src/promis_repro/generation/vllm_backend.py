"""vLLM backend for GPU runs (optional extra ``promis-repro[vllm]``), imported only when used.

vLLM seeds each request on its own (``SamplingParams.seed``), so a prompt's
sample does not depend on its batch, as with the transformers backend.
"""

from __future__ import annotations

import time
from typing import Any

from promis_repro.errors import UserError
from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.hf import render_prompt, row_seed, stop_position
from promis_repro.generation.registry import ModelSpec


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise UserError("the vllm backend needs the optional extra: pip install 'promis-repro[vllm]'") from exc
    return vllm


class VllmGenerator:
    def __init__(self, spec: ModelSpec, **engine_args: Any) -> None:
        if spec.extra.get("adapter"):  # a trained LoRA adapter (agent/trl_agent.py): the transformers backend's
            raise UserError(f"model {spec.name}: the vllm backend loads no trained adapter; use transformers-causal")
        vllm = _import_vllm()
        self.spec = spec
        self.vllm = vllm
        spec.require_pinned()
        self.llm = vllm.LLM(model=spec.hub_id, revision=spec.revision, dtype=spec.dtype, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self.model_id = spec.generation_identity("cuda")

    def render(self, prompt: ChatPrompt) -> str:
        return render_prompt(self.tokenizer, prompt, seq2seq=False)

    def sampling_params(self, settings: DecodingSettings, prompt_text: str) -> Any:
        return self.vllm.SamplingParams(
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=settings.max_new_tokens,
            stop=list(settings.stop) + (["\n```\n"] if self.spec.prompt_format == "instruct" else []),
            include_stop_str_in_output=True,
            seed=row_seed(settings.seed, prompt_text),
        )

    def generate(self, prompts: list[ChatPrompt], settings: DecodingSettings) -> list[Completion]:
        texts = [self.render(p) for p in prompts]
        params = [self.sampling_params(settings, t) for t in texts]
        started = time.monotonic()
        outputs = self.llm.generate(texts, params, use_tqdm=True)
        seconds = time.monotonic() - started
        total = max(1, sum(len(o.outputs[0].token_ids) for o in outputs))
        completions = []
        for output in outputs:
            choice = output.outputs[0]
            text = choice.text
            cut = stop_position(text, settings.stop, self.spec.prompt_format == "instruct")
            completions.append(
                Completion(
                    text=text[:cut] if cut is not None else text,
                    prompt_tokens=len(output.prompt_token_ids),
                    completion_tokens=len(choice.token_ids),
                    seconds=seconds * len(choice.token_ids) / total,
                    finish_reason="stop" if choice.finish_reason == "stop" else "length",
                )
            )
        return completions
