"""Program results on a hidden test suite, cached by everything that decides them, shared across cells.

A group of strategies scores the same programs many times: each strategy's first candidate is the direct
generation of the task's prompt (greedy code is the same under every seed), several strategies end on
it, and a program that loops costs its full time limits (EvalPlus: up to a minute a group) every time
it is scored. Each sandboxed run's ``ProgramResult`` is kept under the sha256 of

- ``FORMAT`` and the evaluator's version: a digest of the modules that decide a verdict (the runner,
  the sandbox, the comparisons, the value codec) and the versions of Python, EvalPlus and NumPy;
- the program text (import header included);
- the suite: the tests, the expected outputs and their per-input time limits, the sandbox limits and
  the isolation mode the run would get;
- the CPU model: time limits and the resource use the efficiency level reads are this kind of machine's;
- the repeat number: the efficiency level takes the median of several runs of one program, so run k
  of a program is its own entry (the medians stay medians of distinct measurements).

Only verdicts are kept (``pass``, ``fail``, ``timeout``): an ``error`` may be the sandbox's own failure
(its zygote died, ...), which must not become every cell's verdict, and errors cost little to rerun; a
harness fault (an exception) is never cached. A timeout is kept: a program that loops is the costly
case, and one verdict for one program makes the paired comparisons of cells consistent. A suite that
cannot be pickled (a value of a class the decoder made at run time) is not cached, and a failed write
only logs. Entries are written like the generation cache's (``generation/cache.py``): a temporary file
renamed into place, the key and a checksum inside; a truncated or mismatched entry is removed and
counts as a miss.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import pickle
import platform
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from promis_repro.data.task import Tests
from promis_repro.evaluation.execute import ExpectedOutputs, Failure, GroupResult, ProgramResult
from promis_repro.io import CacheStats, ChecksummedEntries, cache_root
from promis_repro.sandbox.runner import SandboxLimits, detect_isolation

log = logging.getLogger(__name__)

FORMAT = 1
#: the statuses a run is cached with (see the module's docstring for ``error``)
CACHED_STATUSES = frozenset({"pass", "fail", "timeout"})


@functools.cache
def evaluator_version() -> str:
    """A digest of the sources that decide a verdict and of the Python, EvalPlus and NumPy versions:
    a changed runner, sandbox, comparison or interpreter misses."""
    from importlib.metadata import version

    from promis_repro.evaluation import compare, execute, probes
    from promis_repro.sandbox import child, runner, values

    digest = hashlib.sha256()
    for module in (execute, compare, probes, runner, child, values):
        digest.update(Path(module.__file__ or "").read_bytes())
    digest.update(f"{sys.version}|{version('evalplus')}|{version('numpy')}".encode())
    return digest.hexdigest()[:16]


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return f"{platform.machine()} {platform.processor()}".strip()


def _result(payload: dict[str, Any]) -> ProgramResult:
    return ProgramResult(
        status=payload["status"],
        groups=[GroupResult(**group) for group in payload["groups"]],
        error=payload["error"],
        failures=[Failure(**failure) for failure in payload["failures"]],
        executed=payload["executed"],
        cpu_seconds=payload["cpu_seconds"],
        max_rss_bytes=payload["max_rss_bytes"],
    )


class ResultCache:
    """``run(code, suite, repeat, compute)``: the cached result, else ``compute()``'s, stored."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "evaluations"
        self.entries = ChecksummedEntries(self.root, "result")
        self.stats = CacheStats()
        self._lock = threading.Lock()  # the evaluator's worker threads share one cache

    @staticmethod
    def suite_key(tests: Tests, expected: ExpectedOutputs | None, limits: SandboxLimits | None) -> str | None:
        """The digest of a suite as run here (computed once per task; programs then add only their text),
        or None for a suite pickle cannot encode (its programs then run uncached).

        Pickle is not canonical (a set of strings comes out in each process's hash order): such a suite
        only misses, never hits wrongly.
        """
        try:
            material = pickle.dumps(
                (FORMAT, evaluator_version(), cpu_model(), detect_isolation().mode, limits, tests, expected),
                protocol=4,
            )
        except Exception as exc:  # e.g. an expected value of a class the decoder made at run time
            log.info("a suite is not cached (%s: %s)", type(exc).__name__, exc)
            return None
        return hashlib.sha256(material).hexdigest()

    @staticmethod
    def key(code: str, suite: str, repeat: int) -> str:
        material = json.dumps({"suite": suite, "code": code, "repeat": repeat}, separators=(",", ":"))
        return hashlib.sha256(material.encode()).hexdigest()

    def get(self, key: str) -> ProgramResult | None:
        result, corrupt = self.entries.read(key, _result)
        if corrupt:
            log.warning(
                "evaluation cache entry %s is corrupt (%s); running the program again", self.entries.path(key), corrupt
            )
            with self._lock:
                self.stats.corrupt += 1
        return result

    def put(self, key: str, result: ProgramResult) -> None:
        self.entries.write(key, asdict(result))

    def run(self, code: str, suite: str | None, repeat: int, compute: Callable[[], ProgramResult]) -> ProgramResult:
        if suite is None:
            return compute()
        key = self.key(code, suite, repeat)
        cached = self.get(key)
        with self._lock:
            if cached is not None:
                self.stats.hits += 1
                return cached
            self.stats.misses += 1
        result = compute()
        if result.status in CACHED_STATUSES:
            try:
                self.put(key, result)
            except OSError as exc:  # a full or read-only cache costs speed, never a verdict
                log.warning("evaluation cache: could not write %s (%s)", self.path(key), exc)
        return result
