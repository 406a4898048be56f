"""The evaluation cache: a cached run is the run; corrupt entries and changed programs or suites miss."""

from __future__ import annotations

import json

from promis_repro.data.registry import load_benchmark
from promis_repro.evaluation.cache import ResultCache
from promis_repro.evaluation.evaluator import evaluate_samples
from promis_repro.evaluation.levels import LevelSettings

VERDICT = ("status", "passed", "soft_pass", "base", "plus", "outcomes", "error", "failures")


def _samples(tmp_path, data_dir):
    tasks = load_benchmark("humanevalplus", data_dir)[:2]
    wrong = tasks[0].prompt + "    return False\n"
    rows = [
        {"task_id": tasks[0].task_id, "solution": tasks[0].reference_solution},
        {"task_id": tasks[0].task_id, "solution": wrong},
        {"task_id": tasks[1].task_id, "solution": tasks[1].reference_solution},
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_cached_runs_give_the_uncached_verdicts_and_levels(data_dir, tmp_path):
    samples = _samples(tmp_path, data_dir)
    settings = LevelSettings()
    plain, _ = evaluate_samples("humanevalplus", samples, data_dir=data_dir, workers=2, progress=False)

    cache = ResultCache(tmp_path / "evaluations")
    first, _ = evaluate_samples(
        "humanevalplus", samples, data_dir=data_dir, workers=2, progress=False, levels=settings, cache=cache
    )
    # misses: 2 canonical solutions x 3 runs (their reference profiles) + 1 wrong program; the canonical
    # solutions as samples (scoring run and 2 efficiency reruns) are those very runs
    assert (cache.stats.hits, cache.stats.misses) == (6, 7)
    assert [[row[k] for k in VERDICT] for row in first] == [[row[k] for k in VERDICT] for row in plain]
    assert [row["passed"] for row in first] == [True, False, True]

    again = ResultCache(tmp_path / "evaluations")
    second, _ = evaluate_samples(
        "humanevalplus", samples, data_dir=data_dir, workers=2, progress=False, levels=settings, cache=again
    )
    assert again.stats.misses == 0 and second == first  # levels included: the same measured runs

    # a corrupt entry is a miss, removed and replaced; the rows do not change
    entry = next((tmp_path / "evaluations").rglob("*.json"))
    entry.write_text(entry.read_text()[:40])
    third_cache = ResultCache(tmp_path / "evaluations")
    third, _ = evaluate_samples(
        "humanevalplus", samples, data_dir=data_dir, workers=2, progress=False, levels=settings, cache=third_cache
    )
    assert (third_cache.stats.corrupt, third_cache.stats.misses) == (1, 1)
    assert json.loads(entry.read_text())["key"] == entry.stem
    assert [[row[k] for k in VERDICT] for row in third] == [[row[k] for k in VERDICT] for row in plain]


def test_the_key_holds_the_program_the_suite_and_the_repeat(data_dir):
    task = load_benchmark("humanevalplus", data_dir)[0]
    other = load_benchmark("humanevalplus", data_dir)[1]
    suite = ResultCache.suite_key(task.hidden_tests, None, None)
    assert suite == ResultCache.suite_key(task.hidden_tests, None, None)
    assert suite != ResultCache.suite_key(other.hidden_tests, None, None)
    keys = {ResultCache.key("x = 1", suite, 0), ResultCache.key("x = 2", suite, 0), ResultCache.key("x = 1", suite, 1)}
    assert len(keys) == 3


def test_errors_and_unpicklable_suites_are_not_cached(tmp_path):
    from promis_repro.evaluation.execute import ProgramResult

    cache = ResultCache(tmp_path)
    calls = []

    def sandbox_failure():
        calls.append(1)
        return ProgramResult("error", [], error="sandbox zygote failed")

    for _ in range(2):
        assert cache.run("x = 1", "suite", 0, sandbox_failure).status == "error"
    assert len(calls) == 2 and not any(tmp_path.iterdir())  # an error is rerun, never stored

    class Local:  # pickle cannot find a class made inside a function (the decoder's run-time classes)
        pass

    assert ResultCache.suite_key(None, Local(), None) is None
    assert cache.run("x = 1", None, 0, lambda: ProgramResult("pass", [])).status == "pass"
    assert not any(tmp_path.iterdir())
