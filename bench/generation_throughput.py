"""Generation throughput: the previous decoding path vs today's, side by side in one run, and the cache.

SmolLM2-135M-Instruct on the first 32 MBPP+ prompts, greedy, 2 torch threads:
  1. previous: float32, prompts left-padded into one batch, a DynamicCache grown
     by concatenation, finished rows leaving the batch (this repository's path
     until issue 19, kept here verbatim as the baseline);
  2. today, cold cache: ``TransformersGenerator`` (``auto``: float16 weights on
     an AVX2 CPU, float32 elsewhere; each prompt prefilled
     alone; row-aligned cache and attention; continuous batching; the Llama step
     and draft tokens; ``generation/decoding.py``);
  3. today, warm cache: the same call again.
Then the texts of a batch of 32 against the same prompts in batches of 5 and
alone (batch independence, which the tests also pin).
"Useful tokens" are the tokens up to the end of the first closed code block
(what the evaluator keeps). Goals: today >= 150 useful tokens/s; warm rerun
>= 50x faster than cold; every text the same whatever the batch.

    .venv/bin/python bench/generation_throughput.py [--n 32] [--max-new-tokens 256] [--dtype float32] [--avx2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: the variables with which torch's libraries use their AVX2 kernels only
AVX2_ONLY = {
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def previous_decode(backend: Any, texts: list[str], max_new_tokens: int, stop: tuple[str, ...]) -> list[list[int]]:
    """The decoding loop this repository used before issue 19 (greedy part), for the side-by-side ratio."""
    import torch
    from transformers import DynamicCache

    from promis_repro.generation.hf import stop_position

    tokenizer, model = backend.tokenizer, backend.model
    tokenizer.padding_side = "left"
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    mask = encoded["attention_mask"]
    eos = backend._eos_ids()
    rows = list(range(len(texts)))
    generated: list[list[int]] = [[] for _ in texts]
    running = [""] * len(texts)
    cache = DynamicCache()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    step_input = encoded["input_ids"]
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(
                input_ids=step_input, attention_mask=mask, position_ids=positions, cache=cache,
                use_cache=True, logits_to_keep=1,
            ).logits[:, -1, :].float()  # fmt: skip
            next_tokens = logits.argmax(dim=-1)
            keep = []
            for position, token in enumerate(next_tokens.tolist()):
                row = rows[position]
                if token in eos:
                    continue
                generated[row].append(token)
                running[row] += tokenizer.decode([token], skip_special_tokens=True)
                if stop_position(running[row], stop, True) is not None:
                    continue
                keep.append(position)
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep)
                cache.batch_select_indices(index)
                mask, next_tokens = mask[index], next_tokens[index]
                rows = [rows[p] for p in keep]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            positions = mask.sum(-1, keepdim=True) - 1
            step_input = next_tokens[:, None]
    return generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16-weights"],
        help="today's CPU precision (auto: float16-weights on an AVX2 CPU; bfloat16 is batch-dependent)",
    )
    parser.add_argument(
        "--avx2",
        action="store_true",
        help="hold torch's libraries (fbgemm, ATen, oneDNN, MKL) to AVX2 kernels: the AVX2 code path on a CPU that "
        "has AVX512 (not an AVX2-only machine's speed: its cores and memory differ)",
    )
    args = parser.parse_args()
    if args.avx2:
        # read when each library first dispatches, so before torch is imported
        os.environ.update(AVX2_ONLY)
    scratch = tempfile.TemporaryDirectory(prefix="bench-gen-")  # removed when main returns, with its caches
    generations = Path(scratch.name) / "generations"

    import torch

    from promis_repro.data.registry import load_benchmark
    from promis_repro.generation.base import DecodingSettings
    from promis_repro.generation.cache import GenerationCache
    from promis_repro.generation.hf import TransformersGenerator, stop_position
    from promis_repro.generation.prompts import build_prompt, stop_strings
    from promis_repro.generation.registry import get_model
    from promis_repro.generation.service import CachedGenerator

    spec = get_model("smollm2-135m-instruct")
    tasks = load_benchmark("mbppplus", args.data_dir)[: args.n]
    prompts = [build_prompt(t, spec) for t in tasks]
    settings = DecodingSettings(max_new_tokens=args.max_new_tokens, stop=stop_strings(spec))

    os.environ["PROMIS_REPRO_CPU_DTYPE"] = "float32"
    previous_backend = TransformersGenerator(spec, batch_size=args.batch_size)
    previous_backend.model.set_attn_implementation("sdpa")  # as it was loaded before
    os.environ["PROMIS_REPRO_CPU_DTYPE"] = args.dtype
    backend = TransformersGenerator(spec, batch_size=args.batch_size)
    tokenizer = backend.tokenizer

    def useful_tokens(text: str) -> int:
        cut = stop_position(text, settings.stop, close_fence=True)
        return len(tokenizer(text[:cut] if cut is not None else text, add_special_tokens=False).input_ids)

    # 1. previous
    texts = [backend.render(p) for p in prompts]
    started = time.monotonic()
    previous = previous_decode(previous_backend, texts, args.max_new_tokens, settings.stop)
    previous_seconds = time.monotonic() - started
    previous_useful = sum(useful_tokens(tokenizer.decode(g, skip_special_tokens=True)) for g in previous)
    del previous_backend

    # 2. and 3. today, cold then warm
    generator = CachedGenerator(spec, cache=GenerationCache(generations))
    generator._backend = backend  # the loaded weights, so that load time is not measured
    started = time.monotonic()
    cold = generator.generate(prompts, settings)
    cold_seconds = time.monotonic() - started
    useful = sum(c.completion_tokens for c in cold)
    started = time.monotonic()
    warm = generator.generate(prompts, settings)
    warm_seconds = time.monotonic() - started
    assert [c.text for c in warm] == [c.text for c in cold] and all(c.cached for c in warm)

    # batch independence: the same prompts in batches of 5, and the first 4 alone
    backend.batch_size = 5
    in_fives = [c.text for c in backend.generate(prompts, settings)]
    alone = [backend.generate([p], settings)[0].text for p in prompts[:4]]
    cold_texts = [c.text for c in cold]
    same = sum(a == b for a, b in zip(in_fives, cold_texts)) + sum(a == b for a, b in zip(alone, cold_texts))

    print(f"SmolLM2-135M-Instruct, {len(prompts)} MBPP+ prompts, greedy, max_new_tokens {args.max_new_tokens}, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}"
          f", ATen's kernels {torch.backends.cpu.get_cpu_capability()}"
          f"{' (libraries held to AVX2)' if args.avx2 else ''}")  # fmt: skip
    previous_rate, rate = previous_useful / previous_seconds, useful / cold_seconds
    print(f"{'':40}{'seconds':>9}{'useful tok/s':>14}")
    print(f"{'previous (float32, left-padded batch)':40}{previous_seconds:>9.1f}{previous_rate:>14.1f}")
    label = f"today ({backend.compute_dtype}, drafts)"
    print(f"{label:40}{cold_seconds:>9.1f}{rate:>14.1f}")
    print(f"useful tokens/s ratio today/previous: {rate / previous_rate:.2f}x "
          f"(useful tokens: previous {previous_useful}, today {useful}; goal >= 150 tokens/s)")  # fmt: skip
    print(f"warm cache rerun: {warm_seconds:.3f}s, {cold_seconds / warm_seconds:.0f}x faster than cold")
    print(f"batch independence: {same}/{len(prompts) + len(alone)} texts identical in batches of 5 and alone")
    # the same digest on two machines means the same texts (bench/RESULTS.md compares machines and kernels by it)
    digest = hashlib.sha256("\x00".join(cold_texts).encode()).hexdigest()[:16]
    print(f"texts digest (sha256 of today's {len(cold_texts)} texts joined by NUL, first 16 hex digits): {digest}")


if __name__ == "__main__":
    main()
