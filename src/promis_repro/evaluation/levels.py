"""Five levels of one program beside its test verdicts, and the multi-objective score they make.

Every formula, as recorded in ``results.jsonl`` (``levels``) and averaged in ``metrics.json``:

- ``syntax``     = 1 if ``ast.parse`` accepts the program, else 0.
- ``execution``  = 1 if, in the sandbox, the module ran to the end of its import without an exception
  (whether or not it defines the function the tests call; stdin/stdout programs, whose module is the
  whole program: one test case ran to its end without an exception or a timeout), else 0.
- ``tests``      = SoftPass: the fraction of hidden tests passed.
- ``quality``    = the mean of the parts below, from real tools on the source text only (never run):
    lint       = max(0, 1 - F / L), F = ruff findings of PEP 8 / pyflakes rules (E, W, F with ruff's preview
                 rules, which hold pycodestyle's whitespace and indentation checks; lines of 79), L = non-blank
                 lines;
    complexity = min(1, max_complexity / C), C = the largest cyclomatic complexity (radon) of a function,
                 a method or the module's top-level code (a script without functions is measured too);
    maintain   = MI / 100, radon's maintainability index (0..100; docstrings count as comments);
    security   = 1 / (1 + S), S = bandit's findings weighted by severity (low 1, medium 2, high 3);
                 left out when security checks are off.
  Suppression comments (``# noqa``, ``# nosec``) are ignored: a program cannot switch its own findings off.
  A tool that fails on a program gives ``quality`` null and a recorded reason. A program that does not
  parse has no quality (null), so a cell's mean quality is over its parsable samples.
- ``efficiency`` = (time + memory) / 2 with
    time   = min(1, (c_ref + tau) / (c + tau)), c = CPU seconds (user + system, the kernel's account)
             of the sandboxed runs of the program on the hidden tests: the median of ``reference_repeats``
             runs (the one that scored it and repeats), c_ref = the same median for the task's canonical
             solution on the same tests, in the same evaluation on the same machine; tau = ``time_floor``
             seconds, below which differences are noise;
    memory = min(1, m_ref / m), m and m_ref the medians of those runs' peak resident sets (kernel).
  null where the program fails any hidden test (no credit for fast wrong code) or fails one on a rerun
  (flaky), where the task has no canonical solution or it fails its own tests, or where the kernel's
  account is missing. The account covers every process of the run (orphans the program forked are reaped
  and counted), so work hidden in a child still counts. It is CPU time: a program that sleeps is not slower.

The multi-objective score: M = sum over levels of w_level * level, a null level counting 0; the
default weights are syntax 0.2, execution 0.3, tests 0.3, quality 0.1, efficiency 0.1.
"""

from __future__ import annotations

import ast
import json
import logging
import statistics
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.evaluation.execute import ProgramResult

log = logging.getLogger(__name__)

LEVELS = ("syntax", "execution", "tests", "quality", "efficiency")
DEFAULT_WEIGHTS: dict[str, float] = {"syntax": 0.2, "execution": 0.3, "tests": 0.3, "quality": 0.1, "efficiency": 0.1}
LINT_RULES = ("E", "W", "F")
BANDIT_SEVERITY = {"LOW": 1, "MEDIUM": 2, "HIGH": 3}


@dataclass(frozen=True)
class LevelSettings:
    max_complexity: int = 10  # radon's cyclomatic complexity a block may reach at full marks
    security: bool = True  # bandit's part of ``quality``
    line_length: int = 79  # PEP 8's
    time_floor: float = 0.01  # tau, seconds
    reference_repeats: int = 3  # runs of the canonical solution per task (median)

    def __post_init__(self) -> None:
        if not isinstance(self.max_complexity, int) or isinstance(self.max_complexity, bool) or self.max_complexity < 1:
            raise UserError(f"levels: max_complexity must be an integer >= 1, not {self.max_complexity!r}")
        if not isinstance(self.security, bool):
            raise UserError(f"levels: security must be true or false, not {self.security!r}")
        if not isinstance(self.reference_repeats, int) or self.reference_repeats < 1:
            raise UserError(f"levels: reference_repeats must be an integer >= 1, not {self.reference_repeats!r}")
        if not isinstance(self.time_floor, int | float) or self.time_floor < 0:
            raise UserError(f"levels: time_floor must be a number >= 0, not {self.time_floor!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def level_settings(values: Mapping[str, Any] | None, where: str = "levels") -> LevelSettings:
    """Settings from a mapping; an unknown key or a bad value is a one-line error naming ``where``."""
    values = dict(values or {})
    known = set(LevelSettings.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return LevelSettings(**values)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def check_weights(weights: Mapping[str, Any], where: str = "reward") -> dict[str, float]:
    unknown = sorted(set(weights) - set(LEVELS))
    if unknown:
        raise UserError(f"{where}: unknown level weight(s) {', '.join(unknown)}; levels: {', '.join(LEVELS)}")
    checked = {}
    for level in LEVELS:
        value = weights.get(level, 0.0)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise UserError(f"{where}: weight of {level} must be a number >= 0, not {value!r}")
        checked[level] = float(value)
    return checked


def multi_score(levels: Mapping[str, Any], weights: Mapping[str, float]) -> float:
    """M = sum_l w_l * level_l, a null (or missing) level counting 0."""
    return float(sum(w * float(levels.get(level) or 0.0) for level, w in weights.items()))


# ---------------------------------------------------------------- the parts


def syntax_level(code: str) -> int:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return 0
    return 1


def _ruff_findings(code: str, line_length: int) -> int:
    from ruff.__main__ import find_ruff_bin

    command = [find_ruff_bin(), "check", "--isolated", "--no-cache", "--preview", "--ignore-noqa"]
    command += ["--output-format", "json"]
    command += ["--select", ",".join(LINT_RULES), "--line-length", str(line_length), "--stdin-filename", "sample.py"]
    done = subprocess.run([*command, "-"], input=code, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode not in (0, 1):  # 1: findings
        raise RuntimeError(f"ruff exited {done.returncode}: {done.stderr.strip()[:200]}")
    return len(json.loads(done.stdout or "[]"))


def _bandit_severity(code: str) -> int:
    # bandit loads its output formatters as plugins: one it has no module for (sarif) logs an ERROR and
    # stevedore warns of a deprecated argument, on every scan; neither concerns the scan itself
    logging.getLogger("stevedore.extension").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="promis-bandit-") as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from bandit.core import config, manager

        path = Path(scratch) / "sample.py"
        path.write_text(code)
        scanner = manager.BanditManager(config.BanditConfig(), "file", quiet=True, ignore_nosec=True)
        scanner.discover_files([str(path)])
        scanner.run_tests()
        if scanner.skipped:
            raise RuntimeError(f"bandit skipped the program: {scanner.skipped[0][1]}")
        return sum(BANDIT_SEVERITY.get(str(issue.severity), 1) for issue in scanner.get_issue_list())


def quality_parts(code: str, settings: LevelSettings) -> dict[str, float]:
    """The parts of ``quality`` (see the module's docstring); raises when a tool cannot read the program."""
    from radon.metrics import mi_visit
    from radon.visitors import ComplexityVisitor

    lines = max(1, sum(1 for line in code.splitlines() if line.strip()))
    parts = {"lint": max(0.0, 1.0 - _ruff_findings(code, settings.line_length) / lines)}
    visitor = ComplexityVisitor.from_code(code)
    blocks = [visitor.complexity]  # the module's top-level code
    for block in visitor.blocks:  # functions and classes; methods within their class
        blocks.append(block.complexity)
        blocks.extend(method.complexity for method in getattr(block, "methods", []))
    complexity = max(blocks)
    parts["complexity"] = min(1.0, settings.max_complexity / max(1, complexity))
    parts["maintain"] = max(0.0, min(1.0, float(mi_visit(code, multi=True)) / 100.0))
    if settings.security:
        parts["security"] = 1.0 / (1.0 + _bandit_severity(code))
    return parts


# ------------------------------------------------------------ efficiency


@dataclass(frozen=True)
class ReferenceProfile:
    """The canonical solution's resource use on a suite (medians), or why there is none."""

    cpu_seconds: float | None = None
    max_rss_bytes: int | None = None
    reason: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def reference_profile(run: Callable[[], ProgramResult], repeats: int) -> ReferenceProfile:
    """``run()`` (the canonical solution on the suite) ``repeats`` times; medians of its CPU time and memory.
    A harness fault gives a profile with its reason (the task's efficiency is null), never a failed run."""
    try:
        return usage_profile([run() for _ in range(repeats)])
    except Exception as exc:
        log.exception("the canonical solution's runs failed")
        return ReferenceProfile(reason=f"harness error on the canonical solution: {type(exc).__name__}: {exc}")


def usage_profile(results: list[ProgramResult]) -> ReferenceProfile:
    """The medians of the runs' CPU time and peak memory; a reason instead when one failed or lacks them."""
    if not all(r.passed for r in results):
        failed = next(r for r in results if not r.passed)
        return ReferenceProfile(reason=f"the canonical solution fails its tests ({failed.status})")
    if any(r.cpu_seconds is None or r.max_rss_bytes is None for r in results):
        return ReferenceProfile(reason="the kernel's account of the reference run is missing")
    runs = [{"cpu_seconds": r.cpu_seconds, "max_rss_bytes": r.max_rss_bytes} for r in results]
    return ReferenceProfile(
        statistics.median(r.cpu_seconds for r in results),  # type: ignore[type-var]
        int(statistics.median(r.max_rss_bytes for r in results)),  # type: ignore[type-var]
        runs=runs,
    )


def efficiency_parts(
    result: ProgramResult, reference: ReferenceProfile | None, settings: LevelSettings
) -> dict[str, Any]:
    """``{"time", "memory"}`` in [0, 1], or ``{"reason"}`` when efficiency is null."""
    if not result.passed:
        return {"reason": "fails a hidden test"}
    if reference is None:
        return {"reason": "no canonical solution"}
    if reference.reason is not None:
        return {"reason": reference.reason}
    if result.cpu_seconds is None or result.max_rss_bytes is None or not result.max_rss_bytes:
        return {"reason": "the kernel's account of the run is missing"}
    assert reference.cpu_seconds is not None and reference.max_rss_bytes is not None
    tau = settings.time_floor
    return {
        "time": min(1.0, (reference.cpu_seconds + tau) / (result.cpu_seconds + tau)),
        "memory": min(1.0, reference.max_rss_bytes / result.max_rss_bytes),
        "cpu_seconds": result.cpu_seconds,
        "reference_cpu_seconds": reference.cpu_seconds,
        "max_rss_bytes": result.max_rss_bytes,
        "reference_max_rss_bytes": reference.max_rss_bytes,
    }


# ------------------------------------------------------------ one program


def program_levels(
    code: str,
    result: ProgramResult,
    reference: ReferenceProfile | None,
    settings: LevelSettings,
    rerun: Callable[[], ProgramResult] | None = None,
) -> dict[str, Any]:
    """The five levels of ``code`` (scored as ``result``), their parts and the reasons for any null.

    ``rerun``: runs the program on the same tests again; a passing program with a measured reference is
    run ``reference_repeats - 1`` more times, so its resource use is a median like the reference's.
    """
    levels: dict[str, Any] = {
        "syntax": syntax_level(code),
        "execution": int(result.executed),
        "tests": result.soft_pass,
    }
    notes: dict[str, str] = {}
    quality: dict[str, float] = {}
    if levels["syntax"]:
        try:
            quality = quality_parts(code, settings)
        except Exception as exc:  # a tool's failure on one program never fails the run
            notes["quality"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("quality tools failed on a program: %s", notes["quality"])
    else:
        notes["quality"] = "does not parse"
    levels["quality"] = _mean(quality)
    measured: ProgramResult | str = result
    if rerun is not None and result.passed and reference is not None and reference.reason is None:
        measured = _median_usage(result, rerun, settings.reference_repeats)
    efficiency = {"reason": measured} if isinstance(measured, str) else efficiency_parts(measured, reference, settings)
    if "reason" in efficiency:
        notes["efficiency"] = efficiency.pop("reason")
        levels["efficiency"] = None
    else:
        levels["efficiency"] = (efficiency["time"] + efficiency["memory"]) / 2
    return {**levels, "parts": {"quality": quality, "efficiency": efficiency}, "notes": notes}


def _median_usage(result: ProgramResult, rerun: Callable[[], ProgramResult], repeats: int) -> ProgramResult | str:
    """``result`` with the median resource use of it and ``repeats - 1`` reruns, or why there is none
    (a rerun that fails: a flaky program gets no efficiency; a harness fault: logged, never raised)."""
    try:
        runs = [result, *(rerun() for _ in range(repeats - 1))]
    except Exception as exc:
        log.exception("an efficiency rerun failed")
        return f"harness error on a rerun: {type(exc).__name__}: {exc}"
    if not all(run.passed for run in runs):
        return "fails a hidden test on a rerun (flaky)"
    profile = usage_profile(runs)
    if profile.reason is not None:
        return profile.reason
    measured = replace(result)
    measured.cpu_seconds, measured.max_rss_bytes = profile.cpu_seconds, profile.max_rss_bytes
    return measured


def _mean(parts: dict[str, float]) -> float | None:
    return sum(parts.values()) / len(parts) if parts else None


def summarize_levels(rows: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Per level: the mean over tasks of the per-task mean over samples with a value; and how many samples had one."""
    from promis_repro.metrics import mean_over_tasks

    scored = [row for row in rows if isinstance(row.get("levels"), Mapping)]
    if not scored:
        return None
    summary: dict[str, Any] = {}
    for level in LEVELS:
        grouped: dict[str, list[float]] = {}
        for row in scored:
            value = row["levels"].get(level)
            if value is not None:
                grouped.setdefault(row["task_id"], []).append(float(value))
        summary[level] = mean_over_tasks(grouped) if grouped else None
        summary[f"n_{level}"] = sum(len(v) for v in grouped.values())
    return summary
