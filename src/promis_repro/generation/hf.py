"""transformers backends: causal LMs (chat template, left padding) and seq2seq LMs (CodeT5+).

Batches are formed from prompts sorted by length (less padding). Sampling is
made per-prompt reproducible: instead of torch's global RNG, each row adds
Gumbel noise drawn from its own generator, seeded by (seed, prompt), to the
temperature/top-p processed logits and takes the argmax, which samples
exactly from the processed distribution. So a prompt's sample does not depend
on which other prompts share its batch, or on cache hits. A row stops as soon
as its text contains a stop string or a closed code block.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from typing import Any

from tqdm import tqdm

from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.registry import ModelSpec
from promis_repro.generation.weights import weights_location

log = logging.getLogger(__name__)

CLOSED_FENCE = re.compile(r"```[^\n]*\n.*?```", re.DOTALL)
DEFAULT_BATCH_SIZE = 32


def configure_threads() -> None:
    """One torch thread per worker when several run at once (PROMIS_REPRO_THREADS), else torch's default."""
    import torch

    threads = os.environ.get("PROMIS_REPRO_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


def stop_position(text: str, stop: tuple[str, ...], close_fence: bool) -> int | None:
    """Index just past where ``text`` should end (after a closed fence, before a stop string), or None."""
    ends = []
    if close_fence:
        match = CLOSED_FENCE.search(text)
        if match:
            ends.append(match.end())
    for marker in stop:
        index = text.find(marker)
        if index >= 0:
            ends.append(index)
    return min(ends) if ends else None


def render_prompt(tokenizer: Any, prompt: ChatPrompt, seq2seq: bool) -> str:
    """The exact text the model reads: the chat template applied for instruct models."""
    if prompt.messages and not seq2seq and getattr(tokenizer, "chat_template", None):
        messages = [{"role": role, "content": content} for role, content in prompt.messages]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if prompt.messages:
        return "\n\n".join(content for _, content in prompt.messages)
    return prompt.text


def count_tokens(tokenizer: Any, text: str, generated: int) -> int:
    """Tokens a completion cost: the generated count, or fewer when a stop cut the text.

    Re-tokenizing decoded text can give more tokens than were generated (text
    that does not round-trip), never a fair cost, so the generated count caps it.
    """
    return min(generated, len(tokenizer(text, add_special_tokens=False).input_ids))


def row_seed(seed: int, prompt_key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{prompt_key}".encode()).digest()[:8], "little") & (2**63 - 1)


class _GumbelSampler:
    """Logits processor: per-row seeded Gumbel noise, so argmax = a sample from softmax(logits)."""

    def __init__(self, seeds: list[int], device: Any) -> None:
        import torch

        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.device = device

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        uniform = uniform.clamp_(1e-20, 1.0 - 1e-7)
        noise = (-torch.log(-torch.log(uniform))).to(scores.device, scores.dtype)
        return scores + noise


class StopOnText:
    """Stopping criterion per row: a stop string or (instruct models) a closed code block."""

    def __init__(self, tokenizer: Any, prompt_length: int, stop: tuple[str, ...], close_fence: bool) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stop = stop
        self.close_fence = close_fence

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        done = [stop_position(text, self.stop, self.close_fence) is not None for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class TransformersGenerator:
    """Causal (``seq2seq=False``) or encoder-decoder (``seq2seq=True``) language model through transformers."""

    def __init__(self, spec: ModelSpec, *, batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        configure_threads()
        self.spec = spec
        self.seq2seq = spec.backend == "transformers-seq2seq"
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        location, revision = weights_location(spec)
        dtype = getattr(torch, spec.dtype) if self.device != "cpu" else torch.float32
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
        model_class = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.model = model_class.from_pretrained(location, revision=revision, dtype=dtype).to(self.device).eval()
        if spec.extra.get("adapter"):
            # a trained LoRA adapter (rl_rewriter's rewriter, self_correct_rl's generator: ``agent/trl_agent.py``),
            # merged so decoding costs what the base model costs
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, spec.extra["adapter"]).merge_and_unload().eval()
        if not self.seq2seq:
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        log.info("loaded %s in %.1fs on %s", spec.name, time.monotonic() - started, self.device)
        self.model_id = spec.identity()

    # -- prompts ---------------------------------------------------------------------------------

    def render(self, prompt: ChatPrompt) -> str:
        return render_prompt(self.tokenizer, prompt, self.seq2seq)

    # -- generation ------------------------------------------------------------------------------

    def generate(self, prompts: list[ChatPrompt], settings: DecodingSettings) -> list[Completion]:
        rendered = [self.render(p) for p in prompts]
        lengths = [len(self.tokenizer(text, add_special_tokens=False).input_ids) for text in rendered]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[Completion | None] = [None] * len(prompts)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        generated_tokens = 0
        started = time.monotonic()
        for batch in tqdm(batches, desc=f"generate {self.spec.name}", leave=False, disable=len(batches) < 2):
            for index, completion in zip(batch, self._generate_batch([rendered[i] for i in batch], settings)):
                results[index] = completion
                generated_tokens += completion.completion_tokens
        seconds = time.monotonic() - started
        if prompts:
            log.info(
                "%s: %d completions, %d new tokens in %.1fs (%.1f tokens/s)",
                self.spec.name,
                len(prompts),
                generated_tokens,
                seconds,
                generated_tokens / max(seconds, 1e-9),
            )
        return [r for r in results if r is not None]

    def _generate_batch(self, texts: list[str], settings: DecodingSettings) -> list[Completion]:
        if not self.seq2seq:
            return self._decode_causal(texts, settings)
        return self._generate_seq2seq(texts, settings)

    def _processors(self, texts: list[str], settings: DecodingSettings) -> tuple[Any, _GumbelSampler | None]:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        processors = LogitsProcessorList()
        sampler = None
        if not settings.greedy:
            processors.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_p < 1.0:
                processors.append(TopPLogitsWarper(settings.top_p))
            sampler = _GumbelSampler([row_seed(settings.seed, t) for t in texts], self.device)
        return processors, sampler

    def _decode_causal(self, texts: list[str], settings: DecodingSettings) -> list[Completion]:
        """Our own decoding loop: a row that has finished leaves the batch and its KV cache at once.

        ``model.generate`` keeps finished rows in the batch until the longest
        one ends; with completions of very different lengths most of the
        compute then goes to rows that are already done.
        """
        import torch
        from transformers import DynamicCache

        close_fence = self.spec.prompt_format == "instruct"
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids = encoded["input_ids"].to(self.device)
        mask = encoded["attention_mask"].to(self.device)
        processors, sampler = self._processors(texts, settings)
        eos = (
            set(self.model.generation_config.eos_token_id or [])
            if isinstance(self.model.generation_config.eos_token_id, list)
            else {self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id}
        )
        eos.discard(None)
        rows = list(range(len(texts)))  # batch position -> prompt index
        generated: list[list[int]] = [[] for _ in texts]
        # decoded incrementally for the stop check (the final text is decoded whole)
        running = [""] * len(texts)
        finish = ["length"] * len(texts)
        started = time.monotonic()
        cache = DynamicCache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        step_input = input_ids
        with torch.inference_mode():
            for _ in range(settings.max_new_tokens):
                # logits_to_keep=1: the prompt's forward pass projects only its last position onto the vocabulary
                logits = self.model(
                    input_ids=step_input, attention_mask=mask, position_ids=positions, past_key_values=cache,
                    use_cache=True, logits_to_keep=1,
                ).logits[:, -1, :].float()  # fmt: skip
                scores = processors(input_ids, logits)
                if sampler is not None:
                    scores = sampler(input_ids, scores)
                next_tokens = scores.argmax(dim=-1)
                keep = []
                for position, token in enumerate(next_tokens.tolist()):
                    row = rows[position]
                    if token in eos:
                        finish[row] = "eos"
                        continue
                    generated[row].append(token)
                    running[row] += self.tokenizer.decode([token], skip_special_tokens=True)
                    if stop_position(running[row], settings.stop, close_fence) is not None:
                        finish[row] = "stop"
                        continue
                    keep.append(position)
                if not keep:
                    break
                if len(keep) < len(rows):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    mask, next_tokens = mask[index], next_tokens[index]
                    rows = [rows[p] for p in keep]
                    if sampler is not None:
                        sampler.generators = [sampler.generators[p] for p in keep]
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = mask.sum(-1, keepdim=True) - 1
                step_input = next_tokens[:, None]
                input_ids = step_input
        seconds = time.monotonic() - started
        total = max(1, sum(len(g) for g in generated))
        completions = []
        for index, _text_in in enumerate(texts):
            text = self.tokenizer.decode(generated[index], skip_special_tokens=True)
            cut = stop_position(text, settings.stop, close_fence)
            if cut is not None:
                text = text[:cut]
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=int(encoded["attention_mask"][index].sum()),
                    completion_tokens=count_tokens(self.tokenizer, text, len(generated[index])),
                    seconds=seconds * len(generated[index]) / total,
                    finish_reason=finish[index],
                )
            )
        return completions

    def _generate_seq2seq(self, texts: list[str], settings: DecodingSettings) -> list[Completion]:
        import torch
        from transformers import StoppingCriteriaList

        encoded = self.tokenizer(texts, return_tensors="pt", padding=True)
        encoded = {k: v.to(self.device) for k, v in encoded.items()}
        prompt_length = 0
        close_fence = self.spec.prompt_format == "instruct"
        processors, sampler = self._processors(texts, settings)
        if sampler is not None:
            processors.append(sampler)
        stopping = StoppingCriteriaList()
        if settings.stop or close_fence:
            stopping.append(StopOnText(self.tokenizer, prompt_length, settings.stop, close_fence))
        started = time.monotonic()
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                do_sample=False,  # sampling, when asked for, is the Gumbel processor's argmax
                max_new_tokens=settings.max_new_tokens,
                logits_processor=processors,
                stopping_criteria=stopping,
                pad_token_id=self.tokenizer.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        seconds = time.monotonic() - started
        new_tokens = output
        completions = []
        total = max(1, sum(int((row != self.tokenizer.pad_token_id).sum()) for row in new_tokens))
        for row, text_in in zip(new_tokens, texts):
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            cut = stop_position(text, settings.stop, close_fence)
            finish = "stop" if cut is not None else "length"
            if cut is not None:
                text = text[:cut]
            special = set(self.tokenizer.all_special_ids)
            tokens = count_tokens(self.tokenizer, text, sum(int(t) not in special for t in row))
            if cut is None and int((row == self.tokenizer.eos_token_id).sum()) > 0:
                finish = "eos"
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=len(self.tokenizer(text_in, add_special_tokens=False).input_ids),
                    completion_tokens=tokens,
                    seconds=seconds * int((row != self.tokenizer.pad_token_id).sum()) / total,
                    finish_reason=finish,
                )
            )
        return completions
