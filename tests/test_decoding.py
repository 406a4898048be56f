"""The CPU decode step: row-by-row attention, the Llama step without the modules' call plumbing, draft tokens."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from promis_repro.data.registry import load_benchmark
from promis_repro.generation.base import DecodingSettings
from promis_repro.generation.drafts import NgramDrafter
from promis_repro.generation.prompts import build_prompt
from promis_repro.generation.registry import get_model
from promis_repro.generation.row_attention import attend_rows

TINY = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def backend():
    from promis_repro.generation.hf import TransformersGenerator

    return TransformersGenerator(get_model(TINY), batch_size=6)


def _cache_views(rows: int, capacity: int, span: int, generator: torch.Generator):
    keys = torch.randn(rows, 3, capacity, 64, generator=generator)
    values = torch.randn(rows, 3, capacity, 64, generator=generator)
    return keys, values, keys[:, :, :span], values[:, :, :span]


def test_row_attention_is_softmax_attention_and_a_row_gets_its_bits_in_any_batch():
    generator = torch.Generator().manual_seed(0)
    lengths = np.array([5, 70, 33, 1, 64, 129])
    keys, values, key_view, value_view = _cache_views(6, 192, 130, generator)
    query = torch.randn(6, 9, 1, 64, generator=generator)
    together = attend_rows(query, key_view, value_view, lengths, 0.125)
    for row, length in enumerate(lengths):
        # grouped-query attention: query head h reads key/value head h // 3
        k = keys[row, :, :length].repeat_interleave(3, dim=0)
        v = values[row, :, :length].repeat_interleave(3, dim=0)
        expected = torch.softmax(query[row, :, 0:1] @ k.transpose(1, 2) * 0.125, dim=-1) @ v
        torch.testing.assert_close(together[row, 0], expected[:, 0], rtol=1e-5, atol=1e-6)
        # alone: a one-row cache as long as this row
        one = slice(row, row + 1)
        alone = attend_rows(query[one], keys[one, :, :length], values[one, :, :length], lengths[one], 0.125)
        assert torch.equal(alone[0], together[row])
    # several inputs of one row at different lengths (a row and its drafts) == each on its own
    owners = np.array([1, 1, 1, 4])
    drafted = attend_rows(query[[0, 2, 1, 4]], key_view, value_view, np.array([68, 69, 70, 64]), 0.125, owners)
    assert torch.equal(drafted[2], together[1]) and torch.equal(drafted[3], together[4])
    assert torch.equal(drafted[0], attend_rows(query[:1], key_view[1:2], value_view[1:2], np.array([68]), 0.125)[0])
    with pytest.raises(ValueError, match="do not fit"):
        attend_rows(query[:1], key_view, value_view, np.array([131]), 0.125)


def test_row_attention_leaves_torch_on_the_threads_it_was_given():
    """numba's OpenMP layer starts by setting the OpenMP runtime it shares with torch to every core; a worker
    asked for one torch thread (PROMIS_REPRO_THREADS, the xdist workers) must keep one. A fresh process:
    numba starts its threads once a process."""
    import subprocess
    import sys

    script = (
        "import numpy, torch\n"
        "from promis_repro.generation.row_attention import attend_rows\n"
        "torch.set_num_threads(1)\n"
        "attend_rows(torch.randn(2, 9, 1, 64), torch.randn(2, 3, 8, 64), torch.randn(2, 3, 8, 64),"
        " numpy.array([3, 8]), 0.125)\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}  # what numba makes of a two-core machine
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["1"]


def test_the_llama_step_gives_the_models_own_logits_bit_for_bit(backend, data_dir):
    """``LlamaDecodeStep`` runs the model's operations without its modules' call plumbing: the logits and the keys
    it writes are the ones ``model(...)`` gives through the row-aligned attention."""
    from promis_repro.generation.decoding import RowAlignedCache, _prefill
    from promis_repro.generation.linears import decode_step
    from promis_repro.generation.llama_step import LlamaDecodeStep

    model = backend.model
    assert LlamaDecodeStep.supports(model)
    spec = get_model(TINY)
    texts = [backend.render(build_prompt(t, spec)) for t in load_benchmark("humanevalplus", data_dir)[:3]]
    prompts = [backend.tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    caches = [RowAlignedCache("cpu", torch.float32), RowAlignedCache("cpu", torch.float32)]
    with torch.inference_mode():
        for ids in prompts:
            _, prefilled = _prefill(model, ids, device="cpu")
            for cache in caches:
                cache.add_row(prefilled, len(ids))
        tokens = torch.tensor([[11], [22], [33]])
        for _ in range(3):  # three steps: rows of different lengths, the cache growing
            by_model, by_step = caches
            with decode_step():
                positions, mask = by_model.plan_step()[:, None], by_model.step_mask()
                expected = model(
                    input_ids=tokens, attention_mask=mask, position_ids=positions, cache=by_model, use_cache=True,
                    logits_to_keep=1, row_lengths=(by_model.lengths + 1).numpy(),
                ).logits[:, -1, :].float()  # fmt: skip
                positions = by_step.plan_step()
                got = LlamaDecodeStep(model)(tokens, positions[:, None], by_step, (positions + 1).numpy())
            assert torch.equal(got, expected)
            for cache in caches:
                cache.advance()
            tokens = expected.argmax(-1, keepdim=True)
        for mine, theirs in zip(by_step.layers, by_model.layers):
            assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)


def test_drafts_come_from_the_latest_earlier_occurrence_of_the_longest_suffix():
    drafter = NgramDrafter([1, 2, 3, 4, 1, 2])
    assert drafter.draft(4) == [3, 4, 1, 2]  # (1, 2) occurred at the start, followed by 3, 4, 1, 2
    drafter.extend([3, 9, 1, 2])
    assert drafter.draft(2) == [3, 9]  # (1, 2) last occurred before 3, 9 (its first occurrence: before 3, 4)
    drafter.extend([3, 9])
    assert drafter.draft(4) == [1, 2, 3, 9]  # the 4-gram (1, 2, 3, 9) occurred
    assert NgramDrafter([5, 6, 7]).draft(4) == []  # a suffix never seen before: nothing to propose
    assert NgramDrafter([5, 5]).draft(0) == []


def test_drafts_change_the_steps_not_the_text(backend, data_dir, monkeypatch):
    """Greedy rows take draft tokens into free inputs of a step; the texts are those of plain decoding, in
    fewer steps, with rows joining mid-run and texts ending inside a draft (a stop string, the limit).
    Sampled rows take none."""
    from promis_repro.generation import decoding, llama_step

    steps: list[int] = []
    call = llama_step.LlamaDecodeStep.__call__

    def counted(self, tokens, *args):
        steps.append(tokens.shape[0])
        return call(self, tokens, *args)

    monkeypatch.setattr(llama_step.LlamaDecodeStep, "__call__", counted)
    monkeypatch.setattr(backend, "batch_size", 3)  # 6 prompts: three wait, and join as rows finish
    spec = get_model(TINY)
    prompts = [build_prompt(t, spec) for t in load_benchmark("humanevalplus", data_dir)[:6]]
    cases = (
        DecodingSettings(max_new_tokens=100),
        DecodingSettings(max_new_tokens=40, stop=("return",)),
        DecodingSettings(max_new_tokens=60, temperature=0.8, seed=3),
    )
    results = {}
    for name, inputs in (("drafts", decoding.DRAFT_INPUTS), ("plain", 0)):
        monkeypatch.setattr(decoding, "DRAFT_INPUTS", inputs)
        for case, settings in enumerate(cases):
            steps.clear()
            completions = backend.generate(prompts, settings)
            results[name, case] = ([(c.text, c.finish_reason, c.completion_tokens) for c in completions], list(steps))
    for case in (0, 1):
        (drafted, drafted_steps), (plain, plain_steps) = results["drafts", case], results["plain", case]
        assert drafted == plain
        assert len(drafted_steps) < len(plain_steps) and max(drafted_steps) <= backend.batch_size
    assert any(finish == "stop" for _, finish, _ in results["drafts", 1][0])
    # sampled rows: no drafts, the same steps
    assert results["drafts", 2] == results["plain", 2]


def test_a_causal_models_cpu_texts_are_keyed_by_the_decode_arithmetic(monkeypatch):
    """Texts written by the earlier per-row torch products may round otherwise: other cache keys; bf16's
    since its probe looks at enough outputs (``linears._probe``), the other precisions' unchanged."""
    from promis_repro.generation.registry import BF16_CPU_DECODING, CPU_DECODING

    assert get_model(TINY).generation_identity("cpu")["cpu_decoding"] == CPU_DECODING
    for precision, decoding in (("float32", CPU_DECODING), ("float16-weights", CPU_DECODING),
                                ("bfloat16", BF16_CPU_DECODING)):  # fmt: skip
        monkeypatch.setenv("PROMIS_REPRO_CPU_DTYPE", precision)
        assert get_model(TINY).generation_identity("cpu")["cpu_decoding"] == decoding
    assert BF16_CPU_DECODING != CPU_DECODING
    monkeypatch.delenv("PROMIS_REPRO_CPU_DTYPE")
    assert "cpu_decoding" not in get_model(TINY).generation_identity("cuda")
    assert "cpu_decoding" not in get_model("codet5p-770m-py").generation_identity("cpu")  # seq2seq: generate()
