"""Expected outputs of call-based tests, computed from the reference solution (EvalPlus's protocol), cached.

EvalPlus runs the canonical solution on every input, records the outputs and
the time each took, and derives each input's time limit from that time. We do
the same, in the sandbox, one task per job (in parallel across tasks), and
cache the encoded outputs on disk keyed by the data file's hash, the task and
the Python version. Cache entries are written atomically; an unreadable entry
is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

from promis_repro.data.task import CallTests, Task
from promis_repro.evaluation.execute import MIN_TIME_LIMIT, TIME_LIMIT_FACTOR, ExpectedOutputs
from promis_repro.io import atomic_write_text, cache_root
from promis_repro.sandbox.runner import run_job
from promis_repro.sandbox.values import decode

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
REFERENCE_INPUT_LIMIT = 60.0


class ReferenceFailed(RuntimeError):
    pass


def _cache_path(task: Task) -> Path:
    key = json.dumps(
        [CACHE_FORMAT, task.benchmark, task.source_hash, task.task_id, sys.version_info[:3]], separators=(",", ":")
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    return cache_root() / "expected" / task.benchmark / digest[:2] / f"{digest}.json"


def _compute(task: Task, tests: CallTests) -> dict[str, Any]:
    if task.reference_solution is None:
        raise ReferenceFailed(f"{task.benchmark} {task.task_id}: no reference solution to compute expected outputs")
    names = list(tests.groups)
    job = {
        "mode": "call",
        "code": task.reference_solution,
        "entry_point": tests.entry_point,
        "guard": False,  # EvalPlus's trusted_exec runs the reference unguarded
        "record_time": True,
        "groups": [
            {"inputs": tests.groups[n], "time_limits": [REFERENCE_INPUT_LIMIT] * len(tests.groups[n])} for n in names
        ],
        "groups_to_run": list(range(len(names))),
    }
    total = sum(len(v) for v in tests.groups.values())
    deadline = max(120.0, REFERENCE_INPUT_LIMIT * 4 + total * 0.05)
    output = run_job(job, deadline=deadline)
    if output.problem() is not None:
        # a loaded machine may have slowed the reference past its deadline:
        # once more with four times the time before giving up on caching
        log.warning("%s %s: reference run incomplete (%s); retrying", task.benchmark, task.task_id, output.problem())
        output = run_job(job, deadline=deadline * 4)
    entry: dict[str, Any] = {"task_id": task.task_id, "groups": {}, "complete": output.problem() is None}
    by_key = {(r["g"], r["i"]): r for r in output.records if "g" in r and "i" in r}
    for gi, name in enumerate(names):
        values, times, errors = [], [], {}
        for index in range(len(tests.groups[name])):
            record = by_key.get((gi, index))
            if record is None or "v" not in record:
                problem = (record or {}).get("err") or ("timed out" if record else output.problem() or "no output")
                errors[str(index)] = str(problem)
                values.append({"opaque": "reference-error"})
                times.append(REFERENCE_INPUT_LIMIT)
            else:
                values.append(record["v"])
                times.append(float(record.get("t", 0.0)))
        entry["groups"][name] = {"values": values, "times": times, "errors": errors}
    if any(g["errors"] for g in entry["groups"].values()):
        log.warning("%s %s: the reference solution failed on some inputs", task.benchmark, task.task_id)
    return entry


def _load(path: Path, task: Task) -> dict[str, Any] | None:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("task_id") != task.task_id:
        return None
    groups = entry.get("groups")
    tests = task.hidden_tests
    if not isinstance(groups, dict) or not isinstance(tests, CallTests):
        return None
    for name, inputs in tests.groups.items():
        group = groups.get(name)
        if not isinstance(group, dict) or len(group.get("values", [])) != len(inputs):
            return None
        if len(group.get("times", [])) != len(inputs):
            return None
    return entry


def reference_outputs(task: Task) -> tuple[dict[str, Any], bool]:
    """The cached (or freshly computed) encoded reference outputs and whether they came from the cache."""
    tests = task.hidden_tests
    assert isinstance(tests, CallTests)
    path = _cache_path(task)
    entry = _load(path, task) if path.exists() else None
    if entry is not None:
        return entry, True
    entry = _compute(task, tests)
    if entry["complete"]:
        atomic_write_text(path, json.dumps(entry, separators=(",", ":"), allow_nan=True))
    else:
        log.warning("%s %s: reference outputs incomplete; not cached", task.benchmark, task.task_id)
    return entry, False


def expected_for(task: Task, tests: CallTests | None = None) -> ExpectedOutputs:
    """Expected values and per-input time limits for ``tests`` (default: the hidden tests)."""
    tests = tests or task.hidden_tests
    assert isinstance(tests, CallTests)
    if tests.expected is not None:  # APPS: expected outputs are given
        return ExpectedOutputs(
            values=dict(tests.expected),
            time_limits={n: [4.0] * len(v) for n, v in tests.groups.items()},
        )
    entry, _ = reference_outputs(task)
    values: dict[str, list[Any]] = {}
    limits: dict[str, list[float]] = {}
    not_none = tests.oracle == "evalplus-mbpp" and tests.entry_point in MBPP_OUTPUT_NOT_NONE_TASKS
    for name in tests.groups:
        group = entry["groups"][name]
        decoded = [decode(v) for v in group["values"]]
        if not_none:
            decoded = [v is not None for v in decoded]
        values[name] = decoded
        limits[name] = [max(MIN_TIME_LIMIT, TIME_LIMIT_FACTOR * t) for t in group["times"]]
    return ExpectedOutputs(values=values, time_limits=limits)
