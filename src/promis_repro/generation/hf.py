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
from promis_repro.generation.registry import HALF_WEIGHTS, ModelSpec
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


def _by_settings(settings: list[DecodingSettings]) -> dict[DecodingSettings, list[int]]:
    """The prompt indices of each distinct settings, in order."""
    groups: dict[DecodingSettings, list[int]] = {}
    for index, one in enumerate(settings):
        groups.setdefault(one, []).append(index)
    return groups


class _GumbelSampler:
    """Logits processor: per-row seeded Gumbel noise, so argmax = a sample from softmax(logits)."""

    def __init__(self, seeds: list[int], device: Any) -> None:
        import torch

        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.device = device

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.add_noise(scores, self.generators)

    @staticmethod
    def add_noise(scores: Any, generators: list[Any]) -> Any:
        import torch

        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in generators])
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
        device_kind = "cpu" if self.device == "cpu" else "cuda"
        self.compute_dtype = spec.compute_dtype(device_kind)
        # float16 weights are loaded in float32 and packed after any adapter is merged
        dtype = torch.float32 if self.compute_dtype == HALF_WEIGHTS else getattr(torch, self.compute_dtype)
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
        model_class = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.model = model_class.from_pretrained(location, revision=revision, dtype=dtype).to(self.device).eval()
        if spec.extra.get("adapter"):
            # a trained LoRA adapter (rl_rewriter's rewriter, self_correct_rl's generator: ``agent/trl_agent.py``),
            # merged so decoding costs what the base model costs
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, spec.extra["adapter"]).merge_and_unload().eval()
        if not self.seq2seq and self.device == "cpu":
            from promis_repro.generation.decoding import register_row_aligned_attention
            from promis_repro.generation.linears import pad_linears

            self.model.set_attn_implementation(register_row_aligned_attention())
            pad_linears(self.model, self.compute_dtype, max_rows=batch_size)
        if not self.seq2seq:
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        seconds = time.monotonic() - started
        log.info("loaded %s in %.1fs on %s (%s)", spec.name, seconds, self.device, self.compute_dtype)
        self.model_id = spec.generation_identity(device_kind)

    # -- prompts ---------------------------------------------------------------------------------

    def render(self, prompt: ChatPrompt) -> str:
        return render_prompt(self.tokenizer, prompt, self.seq2seq)

    # -- generation ------------------------------------------------------------------------------

    #: ``generate`` takes one settings per prompt (causal models): rows of different settings share a batch
    mixed_settings = True

    def generate(
        self, prompts: list[ChatPrompt], settings: DecodingSettings | list[DecodingSettings]
    ) -> list[Completion]:
        rendered = [self.render(p) for p in prompts]
        per_row = [settings] * len(prompts) if isinstance(settings, DecodingSettings) else list(settings)
        started = time.monotonic()
        if self.seq2seq:
            completions: list[Completion] = [None] * len(prompts)  # type: ignore[list-item]
            for one, indices in _by_settings(per_row).items():
                batch = self._generate_seq2seq_batches([rendered[i] for i in indices], one)
                for index, completion in zip(indices, batch, strict=True):
                    completions[index] = completion
        else:
            completions = self._decode_causal(rendered, per_row)
        seconds = time.monotonic() - started
        if prompts:
            generated_tokens = sum(c.completion_tokens for c in completions)
            log.info(
                "%s: %d completions, %d new tokens in %.1fs (%.1f tokens/s)",
                self.spec.name,
                len(prompts),
                generated_tokens,
                seconds,
                generated_tokens / max(seconds, 1e-9),
            )
        return completions

    def _generate_seq2seq_batches(self, rendered: list[str], settings: DecodingSettings) -> list[Completion]:
        lengths = [len(self.tokenizer(text, add_special_tokens=False).input_ids) for text in rendered]
        order = sorted(range(len(rendered)), key=lambda i: lengths[i])
        results: list[Completion | None] = [None] * len(rendered)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=f"generate {self.spec.name}", leave=False, disable=len(batches) < 2):
            for index, completion in zip(batch, self._generate_seq2seq([rendered[i] for i in batch], settings)):
                results[index] = completion
        return [r for r in results if r is not None]

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

    def _eos_ids(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        eos = set(configured) if isinstance(configured, list) else {configured, self.tokenizer.eos_token_id}
        eos.discard(None)
        return eos

    def _decode_causal(self, texts: list[str], settings: list[DecodingSettings]) -> list[Completion]:
        """Continuous batching (``generation/decoding.py``): a finished row leaves, a waiting prompt joins.

        ``model.generate`` keeps finished rows in the batch until the longest
        one ends, and pads prompts on the left, which moves a row's keys with
        its batch mates; here neither happens, so a prompt's completion is the
        one it gets alone.
        """
        import torch

        from promis_repro.generation.decoding import decode

        close_fence = self.spec.prompt_format == "instruct"
        prompt_ids = [self.tokenizer(text, add_special_tokens=False).input_ids for text in texts]
        # each row decodes by its own settings: its warpers, and its own generator when it samples
        warpers = {one: self._processors([], one)[0] for one in set(settings)}
        generators = {
            i: torch.Generator(device="cpu").manual_seed(row_seed(one.seed, texts[i]))
            for i, one in enumerate(settings)
            if not one.greedy
        }

        def choose(logits: Any, rows: list[Any]) -> Any:
            groups: dict[DecodingSettings, list[int]] = {}
            for position, row in enumerate(rows):
                groups.setdefault(settings[row.index], []).append(position)
            chosen = torch.empty(len(rows), dtype=torch.long, device=logits.device)
            for one, positions in groups.items():
                # row-wise operations only: a row's token does not depend on which rows share the step
                part = logits if len(groups) == 1 else logits[positions]
                scores = warpers[one](None, part)
                if not one.greedy:
                    scores = _GumbelSampler.add_noise(scores, [generators[rows[p].index] for p in positions])
                chosen[positions] = scores.argmax(dim=-1)
            return chosen

        def piece(token: int) -> str:
            return self.tokenizer.decode([token], skip_special_tokens=True)

        def stopped(index: int, text: str) -> bool:
            return stop_position(text, settings[index].stop, close_fence) is not None

        completions: list[Completion | None] = [None] * len(texts)
        rows = decode(
            self.model, prompt_ids, batch_size=self.batch_size, max_new_tokens=[one.max_new_tokens for one in settings],
            eos=self._eos_ids(), choose=choose, piece=piece, stopped=stopped, device=self.device,
            row_aligned=self.device == "cpu", draftable=lambda index: settings[index].greedy,
        )  # fmt: skip
        progress = tqdm(
            total=len(texts), desc=f"generate {self.spec.name}", leave=False, disable=len(texts) <= self.batch_size
        )
        for row in rows:
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            cut = stop_position(text, settings[row.index].stop, close_fence)
            if cut is not None:
                text = text[:cut]
            completions[row.index] = Completion(
                text=text,
                prompt_tokens=row.prompt_tokens,
                completion_tokens=count_tokens(self.tokenizer, text, len(row.tokens)),
                seconds=row.seconds,
                finish_reason=row.finish,
            )
            progress.update()
        progress.close()
        return [c for c in completions if c is not None]

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
