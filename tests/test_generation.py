"""Generators on the real tiny model (SmolLM2-135M-Instruct), the registry, the cache and code extraction."""

from __future__ import annotations

import json
import multiprocessing
import sys
import types
from pathlib import Path

import pytest

from promis_repro.cli import main
from promis_repro.data.registry import load_benchmark
from promis_repro.errors import UserError
from promis_repro.generation.base import ChatPrompt, Completion, DecodingSettings
from promis_repro.generation.cache import GenerationCache, cache_key
from promis_repro.generation.prompts import build_prompt, extract_code, stop_strings
from promis_repro.generation.registry import BF16_CPU_DECODING, ModelSpec, get_model, load_registry
from promis_repro.generation.service import CachedGenerator

FIXTURES = Path(__file__).parent / "fixtures"
TINY = "smollm2-135m-instruct"
SHORT = DecodingSettings(max_new_tokens=96)


@pytest.fixture(scope="module")
def tiny_backend():
    from promis_repro.generation.hf import TransformersGenerator

    return TransformersGenerator(get_model(TINY), batch_size=4)


@pytest.fixture(scope="module")
def mbppplus(data_dir):
    return load_benchmark("mbppplus", data_dir)


def test_registry_names_and_unknown_model():
    models = load_registry()
    for name in ("codet5p-770m-py", "codellama-7b-instruct", "deepseek-coder-6.7b-instruct",
                 "llama-3.2-3b-instruct", TINY, "all-minilm-l6-v2"):  # fmt: skip
        assert name in models
    with pytest.raises(UserError, match=r"unknown model 'gpt-5'; known: all-minilm-l6-v2, codellama-7b-instruct"):
        get_model("gpt-5")


def test_generate_then_evaluate_end_to_end(tmp_path, data_dir):
    out = tmp_path / "gen"
    assert main(["generate", "--model", TINY, "--benchmark", "mbppplus", "--data-dir", str(data_dir),
                 "--limit", "3", "--max-new-tokens", "96", "--out", str(out)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["Mbpp/2", "Mbpp/3", "Mbpp/4"]
    assert all(r["solution"].strip() and r["completion_tokens"] > 0 for r in rows)
    meta = json.loads((out / "generation.json").read_text())
    assert meta["model"]["name"] == TINY and meta["cache_misses"] == 3
    assert meta["provenance"]["seed"] == 0 and meta["provenance"]["model"]["gguf_file"].endswith(".gguf")
    assert main(["evaluate", "--benchmark", "mbppplus", "--samples", str(out / "samples.jsonl"),
                 "--data-dir", str(data_dir), "--out", str(tmp_path / "eval"), "--quiet"]) == 0  # fmt: skip
    scored = [json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()]
    assert len(scored) == 3 and all(r["status"] in ("pass", "fail", "error", "timeout") for r in scored)


def test_same_seed_same_output_whatever_the_batch(tiny_backend, mbppplus):
    spec = get_model(TINY)
    prompts = [build_prompt(t, spec) for t in mbppplus[:4]]
    for settings in (SHORT, DecodingSettings(max_new_tokens=48, temperature=0.8, top_p=0.9, seed=11)):
        tiny_backend.batch_size = 4
        together = [c.text for c in tiny_backend.generate(prompts, settings)]
        tiny_backend.batch_size = 1
        alone = [c.text for c in tiny_backend.generate(prompts[::-1], settings)][::-1]
        assert together == alone
    other_seed = [c.text for c in tiny_backend.generate(prompts, DecodingSettings(max_new_tokens=48, temperature=0.8,
                                                                                    top_p=0.9, seed=12))]  # fmt: skip
    tiny_backend.batch_size = 4
    assert other_seed != [c.text for c in tiny_backend.generate(prompts, DecodingSettings(
        max_new_tokens=48, temperature=0.8, top_p=0.9, seed=11))]  # fmt: skip


def test_rows_of_different_settings_share_a_batch_and_get_what_they_get_alone(tiny_backend, mbppplus):
    """Strategies driven together send one batch of mixed settings (greedy code, sampled rewrites, other
    lengths and stops): each row decodes by its own, as it would alone; the cache keys each by its own."""
    spec = get_model(TINY)
    prompts = [build_prompt(t, spec) for t in mbppplus[:5]]
    settings = [
        DecodingSettings(max_new_tokens=40),
        DecodingSettings(max_new_tokens=64, temperature=0.8, top_p=0.9, seed=3, stop=()),
        DecodingSettings(max_new_tokens=40),
        DecodingSettings(max_new_tokens=24, temperature=0.7, seed=4),
        DecodingSettings(max_new_tokens=64, temperature=0.8, top_p=0.9, seed=9, stop=()),
    ]
    tiny_backend.batch_size = 4  # a row waits and joins
    mixed = tiny_backend.generate(prompts, settings)
    alone = [tiny_backend.generate([p], s)[0] for p, s in zip(prompts, settings, strict=True)]
    assert [c.text for c in mixed] == [c.text for c in alone]
    assert [c.completion_tokens <= s.max_new_tokens for c, s in zip(mixed, settings, strict=True)] == [True] * 5
    assert mixed[1].text != mixed[4].text or prompts[1] != prompts[4]


def test_the_cache_answers_a_repeated_prompt_once_and_keys_each_row_by_its_settings(tmp_path, tiny_backend, mbppplus):
    from promis_repro.generation.cache import GenerationCache

    spec = get_model(TINY)
    prompt = build_prompt(mbppplus[0], spec)
    cached = CachedGenerator(spec, cache=GenerationCache(tmp_path))
    cached._backend = tiny_backend
    greedy, sampled = DecodingSettings(max_new_tokens=24), DecodingSettings(max_new_tokens=24, temperature=0.8, seed=2)
    first = cached.generate([prompt, prompt, prompt], [greedy, sampled, greedy])
    assert cached.cache.stats.misses == 3 and [c.cached for c in first] == [False, False, True]
    assert first[0].text == first[2].text
    again = cached.generate([prompt, prompt], [sampled, greedy])
    assert [c.text for c in again] == [first[1].text, first[0].text] and all(c.cached for c in again)


def test_a_job_hitting_every_cache_imports_neither_torch_nor_transformers(tmp_path, monkeypatch, tiny_backend):
    """A one-cell rerun reads the render and generation caches only: seconds, not a model stack's imports."""
    import subprocess
    import sys

    monkeypatch.setenv("PROMIS_REPRO_CACHE", str(tmp_path))
    prompt, settings = ChatPrompt(messages=(("user", "Write a Python function add(a, b)."),)), SHORT
    first = CachedGenerator(get_model(TINY))
    first._backend = tiny_backend
    (made,) = first.generate([prompt], settings)
    check = f"""
import sys
from promis_repro.generation.base import ChatPrompt, DecodingSettings
from promis_repro.generation.registry import get_model
from promis_repro.generation.service import CachedGenerator
(hit,) = CachedGenerator(get_model({TINY!r})).generate([{prompt!r}], {settings!r})
assert hit.cached and hit.text == {made.text!r}, hit
print(sorted(name for name in ("torch", "transformers") if name in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16-weights"])
def test_a_decode_step_row_gets_the_bits_it_gets_in_any_batch(precision):
    """The linear layers pad a decode step's rows to a size that rounds alike (``generation/linears.py``):
    a row's output is the same in every batch size from 1 to 40, in each CPU precision we decode in."""
    import torch

    from promis_repro.generation.linears import decode_step, pad_linears
    from promis_repro.generation.registry import cpu_has_avx2

    if precision == "float16-weights" and not cpu_has_avx2():
        pytest.skip("fbgemm's float16-weight GEMM needs an x86 CPU with AVX2")
    dtype = torch.float32 if precision == "float16-weights" else getattr(torch, precision)
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(96, 200), torch.nn.Linear(200, 64, bias=False)).to(dtype)
    pad_linears(model, precision, max_rows=40)
    inputs = torch.randn(40, 1, 96, generator=generator).to(dtype)
    with torch.inference_mode(), decode_step():
        alone = [model(inputs[i : i + 1]) for i in range(40)]
        for rows in range(1, 41):
            batch = model(inputs[:rows])
            assert all(torch.equal(batch[i], alone[i][0]) for i in range(rows)), rows


def test_a_bf16_decode_step_row_gets_its_bits_in_any_batch_even_where_rounding_hides_most_changes():
    """bf16 outputs hide most changes of a product's summation order: on an AMD EPYC with AVX512-BF16 a
    one-row product (1536 -> 576, SmolLM2's down projection) rounded about 2 of 10,000 outputs otherwise
    than the same row among others, which the 40 vectors above never showed and which made 13 of 20 greedy
    MBPP completions depend on their batch. Over 512 vectors, each row's bits alone and in a batch of 4 agree."""
    import torch

    from promis_repro.generation.linears import decode_step, pad_linears

    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(1536, 576, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(576, 1536, generator=generator) * 0.05)
    model = torch.nn.Sequential(layer).to(torch.bfloat16)
    pad_linears(model, "bfloat16", max_rows=4)
    inputs = torch.randn(512, 1, 1536, generator=generator).to(torch.bfloat16)
    with torch.inference_mode(), decode_step():
        alone = torch.cat([model(inputs[i : i + 1]) for i in range(512)])
        together = torch.cat([model(inputs[i : i + 4]) for i in range(0, 512, 4)])
    assert int((alone != together).sum()) == 0


@pytest.mark.parametrize("dtype", ["auto", "float32", "float16-weights"])
def test_continuous_batching_gives_each_prompt_what_it_gets_alone(monkeypatch, data_dir, dtype):
    """Prompts of different lengths, long generations, rows leaving and joining mid-batch: every text is
    the one its prompt gets alone, greedy and sampled, in bf16 (where the CPU has it), in float16 weights
    (x86 with AVX2) and in float32."""
    import warnings

    from promis_repro.generation.registry import cpu_has_avx2

    if dtype == "float16-weights" and not cpu_has_avx2():
        pytest.skip("fbgemm's float16-weight GEMM needs an x86 CPU with AVX2")

    from promis_repro.generation.hf import TransformersGenerator

    monkeypatch.setenv("PROMIS_REPRO_CPU_DTYPE", dtype)
    spec = get_model(TINY)
    backend = TransformersGenerator(spec, batch_size=6)
    assert backend.model_id["compute_dtype"] == spec.compute_dtype("cpu") == backend.compute_dtype
    # the model's own attention outside decode() stays ordinary SDPA (a one-token prompt, a plain forward)
    import torch

    with torch.inference_mode():
        assert backend.model(input_ids=torch.tensor([[1]])).logits.shape[:2] == (1, 1)
    prompts = [build_prompt(t, spec) for t in load_benchmark("humanevalplus", data_dir)[:6]]
    for settings in (DecodingSettings(max_new_tokens=80), DecodingSettings(max_new_tokens=80, temperature=0.8, seed=5)):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*past_key_values.*")  # the call path transformers 5.40 drops
            together = [c.text for c in backend.generate(prompts, settings)]
        backend.batch_size = 4  # two rows wait, and join as others finish
        joined = [c.text for c in backend.generate(prompts[::-1], settings)][::-1]
        backend.batch_size = 6
        alone = [backend.generate([p], settings)[0].text for p in prompts[:3]]
        assert together == joined and together[:3] == alone
        assert len(set(together)) == len(together)


def test_compute_dtype_keys_the_cache_but_not_the_weights_identity(monkeypatch):
    spec = get_model(TINY)
    monkeypatch.setenv("PROMIS_REPRO_CPU_DTYPE", "float32")
    assert spec.compute_dtype("cpu") == "float32" and spec.compute_dtype("cuda") == spec.dtype
    as_float32 = spec.generation_identity("cpu")
    monkeypatch.setenv("PROMIS_REPRO_CPU_DTYPE", "bfloat16")
    assert spec.compute_dtype("cpu") == "bfloat16"
    # another precision writes other text: another cache key; the weights' identity (provenance, resume
    # checks of trained agents) stays what it was, whatever node a job lands on
    # (bf16 also names its own decode arithmetic, BF16_CPU_DECODING: its probe differs, ``linears._probe``)
    assert spec.generation_identity("cpu") == {
        **as_float32,
        "compute_dtype": "bfloat16",
        "cpu_decoding": BF16_CPU_DECODING,
    }
    assert "compute_dtype" not in spec.identity()
    settings = DecodingSettings(max_new_tokens=8)
    assert cache_key(as_float32, "p", settings) != cache_key(spec.generation_identity("cpu"), "p", settings)
    monkeypatch.setenv("PROMIS_REPRO_CPU_DTYPE", "float8")
    with pytest.raises(UserError, match=rf"model {TINY}: cpu dtype 'float8' is not one of auto, float32, bfloat16"):
        spec.compute_dtype("cpu")
    # seq2seq models keep float32 on a CPU whatever is asked (their batched generate pads)
    monkeypatch.setenv("PROMIS_REPRO_CPU_DTYPE", "bfloat16")
    assert get_model("codet5p-770m-py").compute_dtype("cpu") == "float32"


def test_stops_at_the_closed_code_block(tiny_backend, mbppplus):
    spec = get_model(TINY)
    completion = tiny_backend.generate([build_prompt(mbppplus[1], spec)], DecodingSettings(max_new_tokens=200))[0]
    assert completion.finish_reason in ("stop", "eos")
    if completion.finish_reason == "stop":
        assert completion.text.rstrip().endswith("```") and completion.text.count("```") == 2


def test_cache_hits_without_loading_weights(tmp_path, tiny_backend, mbppplus):
    spec = get_model(TINY)
    prompts = [build_prompt(t, spec) for t in mbppplus[:2]]
    first = CachedGenerator(spec, cache=GenerationCache(tmp_path))
    first._backend = tiny_backend
    cold = first.generate(prompts, SHORT)
    assert first.cache.stats.misses == 2 and first.cache.stats.hits == 0
    second = CachedGenerator(spec, cache=GenerationCache(tmp_path))
    warm = second.generate(prompts, SHORT)
    assert second.cache.stats.hits == 2 and second._backend is None  # the weights were never loaded
    assert [c.text for c in warm] == [c.text for c in cold] and all(c.cached for c in warm)


def test_corrupt_cache_entry_is_regenerated(tmp_path, tiny_backend, mbppplus):
    spec = get_model(TINY)
    prompts = [build_prompt(mbppplus[0], spec)]
    generator = CachedGenerator(spec, cache=GenerationCache(tmp_path))
    generator._backend = tiny_backend
    original = generator.generate(prompts, SHORT)[0].text
    entry = next(tmp_path.rglob("*.json"))
    entry.write_text(entry.read_text()[: len(entry.read_text()) // 2])  # truncated, as by a killed job
    again = CachedGenerator(spec, cache=GenerationCache(tmp_path))
    again._backend = tiny_backend
    assert again.generate(prompts, SHORT)[0].text == original
    assert again.cache.stats.corrupt == 1
    assert json.loads(entry.read_text())["completion"]["text"] == original


def _writer(root: str, worker: int) -> None:
    cache = GenerationCache(root)
    for i in range(40):
        key = cache_key({"name": "m"}, f"prompt {i % 10}", DecodingSettings())
        cache.put(key, Completion(f"text {i % 10}", 1, 2, 0.1), {"writer": worker})
        found = cache.get(key)
        assert found is None or found.text == f"text {i % 10}"


def test_concurrent_writers_leave_a_consistent_cache(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    cache = GenerationCache(tmp_path)
    for i in range(10):
        found = cache.get(cache_key({"name": "m"}, f"prompt {i}", DecodingSettings()))
        assert found is not None and found.text == f"text {i}"
    assert cache.stats.corrupt == 0
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_extraction_on_real_smollm2_outputs(data_dir):
    spec = get_model(TINY)
    tasks = {
        (t.benchmark, t.task_id): t for b in ("mbppplus", "humanevalplus", "apps") for t in load_benchmark(b, data_dir)
    }
    rows = [json.loads(line) for line in (FIXTURES / "smollm2_completions.jsonl").read_text().splitlines()]
    assert len(rows) >= 10
    for row in rows:
        task = tasks[(row["benchmark"], row["task_id"])]
        code = extract_code(task, row["completion"], spec)
        if row["completion"].count("```") >= 2:  # complete answers parse; ones cut by the token limit may not
            compile(code, "<extracted>", "exec")
        assert "```" not in code and "This function" not in code  # the prose after the block is gone
        if "def " in row["completion"]:
            assert "def " in code
    humaneval = next(r for r in rows if r["task_id"] == "HumanEval/0")
    code = extract_code(tasks[("humanevalplus", "HumanEval/0")], humaneval["completion"], spec)
    assert code.startswith("from typing import List")  # the prompt's import, which the model left out


def test_extraction_of_unfenced_code_with_trailing_examples(data_dir):
    spec = get_model(TINY)
    task = load_benchmark("mbppplus", data_dir)[0]
    completion = (
        "Here is the function:\n"
        "def similar_elements(a, b):\n"
        "    return tuple(set(a) & set(b))\n"
        "\n"
        "Example usage: similar_elements((1, 2), (2, 3)) returns (2,)\n"
    )
    code = extract_code(task, completion, spec)
    assert code == "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"


def _tiny_seq2seq(tmp_path: Path) -> ModelSpec:
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)  # the same random model every run

    from promis_repro.generation.weights import weights_location

    tokenizer = AutoTokenizer.from_pretrained(weights_location(get_model(TINY))[0])
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
                      decoder_start_token_id=tokenizer.pad_token_id or 0, pad_token_id=tokenizer.pad_token_id or 0,
                      eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return ModelSpec(
        "tiny-t5", "transformers-seq2seq", str(tmp_path), "main", "float32", 512, "completion", "generator"
    )


def test_seq2seq_code_path_with_a_random_tiny_t5(tmp_path, data_dir):
    from promis_repro.generation.hf import TransformersGenerator

    spec = _tiny_seq2seq(tmp_path)
    generator = TransformersGenerator(spec, batch_size=2)
    task = load_benchmark("humanevalplus", data_dir)[0]
    prompts = [build_prompt(task, spec), ChatPrompt(text="def add(a, b):\n")]
    settings = DecodingSettings(max_new_tokens=12, stop=stop_strings(spec))
    first = generator.generate(prompts, settings)
    assert len(first) == 2 and all(c.completion_tokens <= 12 for c in first)
    assert [c.text for c in generator.generate(prompts, settings)] == [c.text for c in first]


def test_vllm_code_path_with_a_stand_in_module(monkeypatch, tmp_path):
    calls = {}
    commit = "0123456789abcdef0123456789abcdef01234567"
    lock = tmp_path / "models.lock.yaml"
    lock.write_text(
        f"deepseek-coder-6.7b-instruct: {{hub_id: deepseek-ai/deepseek-coder-6.7b-instruct, branch: main, "
        f"revision: {commit}, resolved_at: '2026-12-02T00:00:00Z'}}\n"
    )
    monkeypatch.setenv("PROMIS_REPRO_MODELS_LOCK", str(lock))

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class Output:
        def __init__(self, text):
            self.outputs = [types.SimpleNamespace(text=text, token_ids=[1, 2, 3], finish_reason="stop")]
            self.prompt_token_ids = [9, 9]

    class LLM:
        def __init__(self, **kwargs):
            calls["engine"] = kwargs

        def get_tokenizer(self):
            return types.SimpleNamespace(chat_template=None)

        def generate(self, texts, params, use_tqdm=True):
            calls["params"] = params
            return [Output("```python\nx = 1\n```\nprose") for _ in texts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    from promis_repro.generation.vllm_backend import VllmGenerator

    spec = get_model("deepseek-coder-6.7b-instruct")
    generator = VllmGenerator(spec)
    prompts = [ChatPrompt(text="a"), ChatPrompt(text="b")]
    completions = generator.generate(prompts, DecodingSettings(temperature=0.7, top_p=0.9, seed=5))
    assert calls["engine"]["model"] == spec.hub_id and calls["engine"]["revision"] == spec.revision == commit
    seeds = [p.kwargs["seed"] for p in calls["params"]]
    assert len(set(seeds)) == 2  # one seed per prompt, derived from (seed, prompt)
    assert calls["params"][0].kwargs["temperature"] == 0.7 and calls["params"][0].kwargs["max_tokens"] == 512
    assert completions[0].text == "```python\nx = 1\n```"


def test_real_vllm_is_optional():
    vllm = pytest.importorskip("vllm", reason="vllm is an optional GPU extra, not installed here")
    assert hasattr(vllm, "LLM")
