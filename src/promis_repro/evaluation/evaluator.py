"""Evaluate a samples file against a benchmark's hidden tests, in parallel, into results rows."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from promis_repro.data.registry import load_benchmark, normalize_task_id
from promis_repro.data.task import AssertTests, CallTests, Task, Tests
from promis_repro.errors import UserError
from promis_repro.evaluation.cache import ResultCache
from promis_repro.evaluation.execute import ExpectedOutputs, ProgramResult, run_assert_tests, run_tests
from promis_repro.evaluation.expected import expected_for
from promis_repro.evaluation.levels import LevelSettings, ReferenceProfile, program_levels, reference_profile
from promis_repro.io import read_jsonl
from promis_repro.sandbox.runner import SandboxLimits, close_thread_zygote

log = logging.getLogger(__name__)

#: The header several published harnesses put before generated code (EPiC's list).
IMPORT_HEADERS = {
    "none": "",
    "common": "import re\nimport math\nimport heapq\nimport itertools\nfrom typing import *\n",
}


@dataclass(frozen=True)
class Sample:
    task_id: str
    sample_index: int
    solution: str


def read_samples(path: str | os.PathLike[str], benchmark: str, known: dict[str, Task]) -> list[Sample]:
    """Rows ``{"task_id", "solution"}`` in input order; a malformed row or unknown task id is a UserError."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise UserError(f"samples file {path} does not exist")
    counters: dict[str, int] = defaultdict(int)
    samples = []
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
        if "task_id" not in row or "solution" not in row:
            raise UserError(f"{where}: a sample needs 'task_id' and 'solution'")
        if not isinstance(row["solution"], str):
            raise UserError(f"{where}: 'solution' is not a string")
        task_id = normalize_task_id(benchmark, row["task_id"])
        if task_id not in known:
            raise UserError(f"{where}: unknown task_id {row['task_id']!r} for benchmark {benchmark}")
        samples.append(Sample(task_id, counters[task_id], row["solution"]))
        counters[task_id] += 1
    return samples


def reference_test_count(task: Task, tests: AssertTests) -> AssertTests:
    """Assert suites whose asserts sit inside a function (HumanEval's ``check``) are counted on the reference."""
    if tests.n_tests is not None or not tests.call or task.reference_solution is None:
        return tests
    result = run_assert_tests(task.reference_solution, tests, guard=False)
    if not result.passed:
        log.warning(
            "%s %s: the reference solution fails its own tests (%s)", task.benchmark, task.task_id, result.error
        )
    return AssertTests(tests.setup, tests.asserts, tests.call, tests.entry_point, n_tests=result.groups[0].progress)


def evaluate_program(
    task: Task, code: str, tests: Tests | None = None, *, guard: bool = True, limits: SandboxLimits | None = None
) -> ProgramResult:
    """Score ``code`` on ``tests`` (default: the task's hidden tests)."""
    tests = tests if tests is not None else task.hidden_tests
    expected = expected_for(task, tests) if isinstance(tests, CallTests) else None
    return run_tests(code, tests, expected, guard=guard, limits=limits)


def result_row(sample: Sample, result: ProgramResult) -> dict[str, Any]:
    base = result.group("base")
    plus = result.group("plus")
    if base is None:  # single-group suites report everything as "base"
        base = result.groups[0] if result.groups else None
    base_details = base.details if base else []
    plus_details = plus.details if plus else []
    return {
        "task_id": sample.task_id,
        "sample_index": sample.sample_index,
        "status": result.status,
        "passed": result.passed,
        "soft_pass": result.soft_pass,
        "passed_base": bool(base and base.status == "pass"),
        "soft_pass_base": (sum(base_details) / len(base_details)) if base_details else 0.0,
        "base": base_details,
        "plus": plus_details,
        "base_status": base.status if base else None,
        "plus_status": plus.status if plus else None,
        "outcomes": {o: sum(g.outcomes.count(o) for g in result.groups) for o in ("pass", "fail", "error", "timeout")},
        "error": result.error,
        "failures": [f.as_dict() for f in result.failures],
    }


def evaluate_samples(
    benchmark: str,
    samples_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    workers: int = 2,
    import_header: str = "none",
    limits: SandboxLimits | None = None,
    progress: bool = True,
    levels: LevelSettings | None = None,
    cache: ResultCache | None = None,
) -> tuple[list[dict[str, Any]], list[Task]]:
    """Score every sample; with ``levels``, each row also gets its five levels (``evaluation/levels.py``),
    the canonical solution's resource use measured here, before its task's samples. With ``cache``
    (``evaluation/cache.py``), a run of a program on a suite is taken from the cache when this machine
    made it before (the canonical solution's runs too), and stored otherwise."""
    if import_header not in IMPORT_HEADERS:
        raise UserError(f"unknown import header {import_header!r}; known: {', '.join(IMPORT_HEADERS)}")
    tasks = {t.task_id: t for t in load_benchmark(benchmark, data_dir)}
    samples = read_samples(samples_path, benchmark, tasks)
    header = IMPORT_HEADERS[import_header]
    used = sorted({s.task_id for s in samples}, key=list(tasks).index)

    # Work items on one priority queue shared by the worker threads: first
    # every task's preparation (expected outputs or test counts from the
    # reference solution), then the samples, slowest tasks first, each as soon
    # as its task is prepared. A slow task's reference run therefore starts
    # early, and no core idles behind a barrier between the two phases.
    suites: dict[str, tuple[Tests, ExpectedOutputs | None]] = {}
    suite_keys: dict[str, str | None] = {}
    references: dict[str, ReferenceProfile | None] = {}
    by_task: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        by_task[sample.task_id].append(index)
    rows: list[dict[str, Any]] = [{}] * len(samples)
    jobs: queue.PriorityQueue[tuple[float, int, str, Any]] = queue.PriorityQueue()
    counter = itertools.count()
    for task_id in used:
        jobs.put((0.0, next(counter), "prepare", task_id))
    remaining = [len(samples)]
    done = threading.Condition()
    errors: list[BaseException] = []
    bar = tqdm(total=len(samples), desc=f"evaluate {benchmark}", leave=False, disable=not progress)

    def run(task_id: str, code: str, repeat: int = 0) -> ProgramResult:
        """``code`` on the task's suite; ``repeat``: which run of it (levels take medians of distinct runs)."""
        tests, expected = suites[task_id]

        def compute() -> ProgramResult:
            return run_tests(code, tests, expected, limits=limits)

        return compute() if cache is None else cache.run(code, suite_keys[task_id], repeat, compute)

    def prepare(task_id: str) -> None:
        task = tasks[task_id]
        tests = task.hidden_tests
        expected = None
        if isinstance(tests, CallTests):
            expected = expected_for(task)
        elif isinstance(tests, AssertTests):
            tests = reference_test_count(task, tests)
        suites[task_id] = (tests, expected)
        if cache is not None:
            suite_keys[task_id] = cache.suite_key(tests, expected, limits)
        if levels is not None:
            reference = task.reference_solution
            repeats = itertools.count()
            references[task_id] = (
                None
                if reference is None
                else reference_profile(
                    lambda: run(task_id, header + reference, next(repeats)), levels.reference_repeats
                )
            )
        cost = sum(sum(limits_) for limits_ in expected.time_limits.values()) if expected else 0.0
        for index in by_task[task_id]:
            jobs.put((1.0 / (1.0 + cost), next(counter), "score", index))

    def score(index: int) -> None:
        sample = samples[index]
        code = header + sample.solution
        try:
            result = run(sample.task_id, code)
        except Exception as exc:  # a harness fault on one program must not sink the others
            log.exception("%s sample %d: evaluation failed", sample.task_id, sample.sample_index)
            result = ProgramResult("error", [], error=f"harness error: {type(exc).__name__}: {exc}")
        rows[index] = result_row(sample, result)
        if levels is not None:
            repeats = itertools.count(1)
            rows[index]["levels"] = program_levels(
                sample.solution,
                result,
                references[sample.task_id],
                levels,
                rerun=lambda: run(sample.task_id, code, next(repeats)),
            )
        with done:
            remaining[0] -= 1
            bar.update()
            done.notify_all()

    def work() -> None:
        try:
            drain()
        finally:
            close_thread_zygote()

    def drain() -> None:
        while True:
            with done:
                if remaining[0] <= 0 or errors:
                    return
            try:
                _, _, kind, payload = jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                prepare(payload) if kind == "prepare" else score(payload)
            except BaseException as exc:
                with done:
                    errors.append(exc)
                    done.notify_all()
                return

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bar.close()
    if errors:
        raise errors[0]
    return rows, [tasks[t] for t in used]
