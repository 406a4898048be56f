"""One line per finished Snakemake job, with an ETA, from Snakemake's own log lines.

Snakemake announces a job in a block (``rule run_cell:`` then indented ``jobid: 12`` and
``wildcards: model=..., benchmark=...``), and reports it with ``Finished jobid: 12 (Rule: run_cell)``
followed by ``37 of 226 steps (16%) done``. ``PipelineProgress`` reads those lines and, per finished job, gives
``[0:02:03] 37/226 jobs (16%)  run_cell smollm2-135m-instruct/mbpp/direct/seed1  ETA 0:08:40``: the elapsed time
since the run started, and the remaining jobs at the mean rate so far (jobs differ in length, so the
ETA settles as the run goes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RULE_LINE = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")
JOBID_LINE = re.compile(r"^\s+jobid: (\d+)\s*$")
WILDCARDS_LINE = re.compile(r"^\s+wildcards: (.*)$")
TIMESTAMP_LINE = re.compile(r"^\s*\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]\s*$")
FINISHED_LINE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
STEPS_LINE = re.compile(r"^(\d+) of (\d+) steps \((?:\d+(?:\.\d+)?%)\) done")
# wildcards shown, in this order, when a job has them (the rest add little to a progress line)
SHOWN = ("model", "benchmark", "strategy", "agent", "variant", "seed")


def clock(seconds: float) -> str:
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


@dataclass
class PipelineProgress:
    """Feed Snakemake's log lines to ``read``; it returns the progress line of each finished job."""

    now: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)
    jobs: dict[str, str] = field(default_factory=dict)  # jobid -> what the job is
    _rule: str | None = None
    _jobid: str | None = None
    _finished: list[str] = field(default_factory=list)  # jobs finished since the last progress count

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.now()

    def read(self, line: str) -> str | None:
        line = line.rstrip("\n")
        if TIMESTAMP_LINE.match(line):
            self._rule = self._jobid = None  # a new block starts
        elif match := RULE_LINE.match(line):
            self._rule, self._jobid = match.group(1), None
        elif (match := JOBID_LINE.match(line)) and self._rule:
            self._jobid = match.group(1)
            self.jobs[self._jobid] = self._rule
        elif (match := WILDCARDS_LINE.match(line)) and self._jobid:
            self.jobs[self._jobid] = f"{self._rule} {describe(match.group(1))}"
        elif match := FINISHED_LINE.match(line):
            self._finished.append(self.jobs.get(match.group(1), match.group(2)))
        elif (match := STEPS_LINE.match(line)) and self._finished:
            # a group job reports its jobs' ends, then one count: a line for each of them
            done, total = int(match.group(1)), int(match.group(2))
            first = done - len(self._finished) + 1
            lines = [self.line(first + n, total, what) for n, what in enumerate(self._finished)]
            self._finished = []
            return "\n".join(lines)
        return None

    def line(self, done: int, total: int, what: str) -> str:
        elapsed = self.now() - self.started
        eta = clock(elapsed / done * (total - done)) if done else "?"
        percent = 100 * done / total if total else 100.0
        return f"[{clock(elapsed)}] {done}/{total} jobs ({percent:.0f}%)  {what}  ETA {eta}"


def describe(wildcards: str) -> str:
    """``model=m, benchmark=mbpp, strategy=direct, seed=1, variant=`` -> ``m/mbpp/direct/seed1``."""
    values = dict(part.split("=", 1) for part in wildcards.split(", ") if "=" in part)
    shown = []
    for key in SHOWN:
        value = values.get(key)
        if value:
            shown.append(f"seed{value}" if key == "seed" else value)
    return "/".join(shown) or wildcards
