"""Generation throughput: naive one-prompt-at-a-time ``model.generate`` vs our backend, and the cache.

SmolLM2-135M-Instruct on the first 32 MBPP+ prompts, greedy, in one run:
  1. naive: each prompt alone through ``model.generate`` with no stop strings
     (it runs to EOS or max_new_tokens);
  2. ours, cold cache: batched, length-sorted, stopping each row at its closed
     code block;
  3. ours, warm cache: the same call again.
"Useful tokens" are the tokens up to the end of the first closed code block
(what the evaluator keeps); tokens/s are reported both raw and useful. Goals:
useful tokens/s >= 4x naive; warm rerun >= 50x faster than cold.

    .venv/bin/python bench/generation_throughput.py [--n 32] [--max-new-tokens 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    # a fresh generation cache, the converted checkpoint reused from the usual cache
    generations = Path(tempfile.mkdtemp(prefix="bench-gen-"))

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
    backend = TransformersGenerator(spec, batch_size=args.batch_size)
    tokenizer, model = backend.tokenizer, backend.model

    def useful_tokens(text: str) -> int:
        cut = stop_position(text, settings.stop, close_fence=True)
        return len(tokenizer(text[:cut] if cut is not None else text, add_special_tokens=False).input_ids)

    # 1. naive
    raw = useful = 0
    started = time.monotonic()
    for prompt in prompts:
        encoded = tokenizer(backend.render(prompt), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(**encoded, do_sample=False, max_new_tokens=args.max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        new = output[0, encoded["input_ids"].shape[1] :]
        raw += len(new)
        useful += useful_tokens(tokenizer.decode(new, skip_special_tokens=True))
    naive_seconds = time.monotonic() - started

    # 2. and 3. ours, cold then warm
    generator = CachedGenerator(spec, cache=GenerationCache(generations))
    generator._backend = backend  # the loaded weights, so that load time is not measured
    started = time.monotonic()
    cold = generator.generate(prompts, settings)
    cold_seconds = time.monotonic() - started
    ours_useful = sum(c.completion_tokens for c in cold)
    started = time.monotonic()
    warm = generator.generate(prompts, settings)
    warm_seconds = time.monotonic() - started
    assert [c.text for c in warm] == [c.text for c in cold] and all(c.cached for c in warm)

    print(f"SmolLM2-135M-Instruct, {len(prompts)} MBPP+ prompts, greedy, max_new_tokens {args.max_new_tokens}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'':22}{'seconds':>9}{'raw tok/s':>11}{'useful tok/s':>14}")
    print(f"{'naive (1 at a time)':22}{naive_seconds:>9.1f}{raw / naive_seconds:>11.1f}{useful / naive_seconds:>14.1f}")
    print(f"{'ours (batched, stops)':22}{cold_seconds:>9.1f}{'':>11}{ours_useful / cold_seconds:>14.1f}")
    print(f"useful tokens/s ratio ours/naive: {(ours_useful / cold_seconds) / (useful / naive_seconds):.2f}x "
          f"(useful tokens: naive {useful}, ours {ours_useful})")  # fmt: skip
    print(f"warm cache rerun: {warm_seconds:.3f}s, {cold_seconds / warm_seconds:.0f}x faster than cold")
    os.environ.pop("PROMIS_REPRO_CACHE", None)


if __name__ == "__main__":
    main()
