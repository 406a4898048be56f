"""Score one program against one test suite: run it in the sandbox, compare in the harness.

The result keeps EvalPlus's vocabulary per group (``pass``/``fail``/``timeout``
and the 0/1 detail of each input, in dataset order) and adds our own overall
``status`` (``pass``/``fail``/``timeout``/``error``), the SoftPass fraction
and short failure messages that strategies use as feedback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promis_repro.data.task import AssertTests, CallTests, StdioTests, Tests
from promis_repro.evaluation.compare import AtolState, apps_call_matches, apps_stdout_matches, evalplus_matches
from promis_repro.evaluation.probes import rewrite_asserts
from promis_repro.sandbox.runner import RunOutput, SandboxLimits, run_job
from promis_repro.sandbox.values import decode

#: EvalPlus's defaults: per-input limit = max(MIN_TIME_LIMIT, FACTOR * reference time).
MIN_TIME_LIMIT = 1.0
TIME_LIMIT_FACTOR = 4.0
#: EvalPlus caps one group's process at 60 s (+2 s for start-up and collection).
GROUP_TIME_CAP = 60.0
ASSERT_TIME_LIMIT = 5.0
APPS_TIME_LIMIT = 4.0
MAX_FAILURES_KEPT = 5


@dataclass
class Failure:
    group: str
    index: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "index": self.index, "message": self.message}


@dataclass
class GroupResult:
    name: str
    status: str  # EvalPlus vocabulary: pass | fail | timeout
    details: list[int]  # one 0/1 per input in dataset order; untested inputs are 0
    progress: int  # inputs that produced a verdict (EvalPlus returns details[:progress])
    # per test: pass | fail (wrong answer) | error (raised) | timeout (its limit,
    # or never reached because the program was killed or died)
    outcomes: list[str] = field(default_factory=list)


def _outcome(record: dict[str, Any], ok: bool) -> str:
    if ok:
        return "pass"
    if record.get("timeout"):
        return "timeout"
    return "error" if "err" in record else "fail"


def _fill_outcomes(outcomes: list[str | None]) -> list[str]:
    return [o if o is not None else "timeout" for o in outcomes]


@dataclass
class ProgramResult:
    status: str  # pass | fail | timeout | error
    groups: list[GroupResult]
    error: str | None = None
    failures: list[Failure] = field(default_factory=list)
    # the program ran to the end of its import without an exception (stdio programs: one case ran to its end)
    executed: bool = False
    # the kernel's accounting of the runs that scored it (CPU seconds summed, peak resident set), when known
    cpu_seconds: float | None = None
    max_rss_bytes: int | None = None

    def add_usage(self, outputs: list[RunOutput], executed: bool) -> ProgramResult:
        """Record how the program ran: ``executed`` and the runs' resource usage (None if any run lacks it)."""
        self.executed = executed
        cpu = [o.cpu_seconds for o in outputs]
        rss = [o.max_rss_bytes for o in outputs]
        self.cpu_seconds = sum(c for c in cpu if c is not None) if outputs and None not in cpu else None
        self.max_rss_bytes = max(r for r in rss if r is not None) if outputs and None not in rss else None
        return self

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def n_tests(self) -> int:
        return sum(len(g.details) for g in self.groups)

    @property
    def n_passed(self) -> int:
        return sum(sum(g.details) for g in self.groups)

    @property
    def soft_pass(self) -> float:
        return self.n_passed / self.n_tests if self.n_tests else 0.0

    def group(self, name: str) -> GroupResult | None:
        return next((g for g in self.groups if g.name == name), None)

    def feedback(self) -> str:
        """Short text for a strategy: what passed and the first failures."""
        lines = [f"passed {self.n_passed}/{self.n_tests} tests"]
        if self.error and not self.failures:
            lines.append(self.error)
        lines.extend(f.message for f in self.failures)
        return "\n".join(lines)


def _short(value: Any, limit: int = 160) -> str:
    try:
        text = repr(value)
    except Exception:  # a huge int past sys.int_max_str_digits, ...
        text = f"<{type(value).__name__} value>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _record_problem(record: dict[str, Any]) -> str | None:
    if record.get("timeout"):
        return "timed out"
    if "err" in record:
        return f"raised {record['err']}"
    return None


def _decoded(record: dict[str, Any]) -> tuple[bool, Any]:
    try:
        return True, decode(record.get("v"))
    except Exception:  # malformed or hostile data: never the harness's problem
        return False, None


def _index(record: dict[str, Any], key: str, size: int) -> int | None:
    """``record[key]`` when it is a valid index below ``size`` (records come from untrusted code)."""
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size:
        return value
    return None


@dataclass
class ExpectedOutputs:
    """Per group: expected values (decoded) and per-input time limits."""

    values: dict[str, list[Any]]
    time_limits: dict[str, list[float]]


def _loaded(records: list[dict[str, Any]]) -> bool:
    """The worker reported the end of the program's import (nothing after its own last word counts)."""
    for record in records:
        if "exit" in record:
            return False
        if record.get("loaded") is True:
            return True
    return False


def _load_error(records: list[dict[str, Any]]) -> str | None:
    for record in records:
        if "load_error" in record:
            return str(record["load_error"])
    return None


def run_call_tests(
    code: str,
    tests: CallTests,
    expected: ExpectedOutputs,
    *,
    guard: bool = True,
    limits: SandboxLimits | None = None,
) -> ProgramResult:
    names = list(tests.groups)
    dataset = {"evalplus-mbpp": "mbpp", "evalplus-humaneval": "humaneval"}.get(tests.oracle, "")
    results: dict[str, GroupResult] = {}
    failures: list[Failure] = []
    problem: str | None = None
    load_error: str | None = None
    budgets = {n: min(GROUP_TIME_CAP, sum(expected.time_limits[n])) + 2 for n in names}
    pending = list(range(len(names)))
    outputs: list[RunOutput] = []
    while pending:
        job = {
            "mode": "call",
            "code": code,
            "entry_point": tests.entry_point,
            "guard": guard,
            "groups": [
                {"inputs": tests.groups[n], "time_limits": expected.time_limits[n], "budget": budgets[n]}
                if i in pending
                else None
                for i, n in enumerate(names)
            ],
            "groups_to_run": pending,
        }
        # the child enforces each group's budget (less its own encoding time);
        # the supervisor's deadline is only the backstop for a program that hangs
        output = run_job(job, deadline=2 * sum(budgets[names[i]] for i in pending) + 5, limits=limits)
        outputs.append(output)
        load_error = _load_error(output.records)
        by_group: dict[int, dict[int, dict[str, Any]]] = {i: {} for i in pending}
        started: set[Any] = set()
        finished: set[Any] = set()
        for record in output.records:
            if "exit" in record:
                break  # nothing after the worker's own last word counts
            group = record.get("g")
            if group in by_group:
                position = _index(record, "i", len(tests.groups[names[group]]))
                if position is not None:
                    by_group[group].setdefault(position, record)  # the first word on an input stands
            elif "group" in record:
                started.add(record["group"])
            elif "done" in record:
                finished.add(record["done"])
        for index in pending:
            name = names[index]
            inputs = tests.groups[name]
            details = [0] * len(inputs)
            outcomes: list[str | None] = [None] * len(inputs)
            state = AtolState(tests.atol)
            records = by_group[index]
            for position in sorted(records):
                record = records[position]
                issue = _record_problem(record)
                ok = undecodable = False
                if issue is None:
                    decoded_ok, out = _decoded(record)
                    exp = expected.values[name][position]
                    if not decoded_ok:
                        undecodable = True
                        issue = "returned a value the harness could not decode"
                    elif tests.oracle == "apps":
                        ok = apps_call_matches(out, exp)
                    else:
                        ok = evalplus_matches(dataset, tests.entry_point, inputs[position], out, exp, state)
                    if not ok and issue is None:
                        issue = f"returned {_short(out)}, expected {_short(exp)}"
                details[position] = int(ok)
                outcomes[position] = "error" if undecodable else _outcome(record, ok)
                if not ok and len(failures) < MAX_FAILURES_KEPT:
                    failures.append(
                        Failure(name, position, f"{tests.entry_point}(*{_short(inputs[position])}) {issue}")
                    )
            if load_error is not None:
                status = "fail"
                outcomes = ["error"] * len(inputs)
            elif index in finished:
                status = "pass" if len(records) == len(inputs) and all(details) else "fail"
            else:
                status = "timeout"  # EvalPlus: a group process that ended without a verdict
            results[name] = GroupResult(name, status, details, len(records), _fill_outcomes(outcomes))
        if load_error is not None:
            break
        if any(i not in finished for i in pending):
            problem = problem or output.problem()
        # EvalPlus runs each group in its own process: a group killed midway
        # does not take the groups after it down; those never started run again
        remaining = [i for i in pending if i not in finished and i not in started]
        # a process that died before starting any group (os._exit at import)
        # still costs its first group, as each EvalPlus group process would die
        pending = remaining[1:] if remaining == pending else remaining
    groups = [results[n] for n in names if n in results]
    executed = bool(outputs) and _loaded(outputs[0].records)
    return _overall(groups, failures, load_error, problem).add_usage(outputs, executed)


def _overall(
    groups: list[GroupResult], failures: list[Failure], load_error: str | None, problem: str | None
) -> ProgramResult:
    if load_error is not None:
        return ProgramResult("error", groups, error=load_error, failures=failures)
    if all(g.status == "pass" for g in groups):
        return ProgramResult("pass", groups)
    timed_out = any(g.status == "timeout" for g in groups) or any(f.message.endswith("timed out") for f in failures)
    error = problem or (failures[0].message if failures else None)
    if problem and not problem.startswith("timeout"):
        return ProgramResult("error", groups, error=error, failures=failures)
    return ProgramResult("timeout" if timed_out else "fail", groups, error=error, failures=failures)


def assert_program(tests: AssertTests) -> str:
    parts = [tests.setup, *tests.asserts]
    if tests.call:
        parts.append(tests.call)
    return "\n".join(p for p in parts if p)


def run_assert_tests(
    code: str, tests: AssertTests, *, guard: bool = True, limits: SandboxLimits | None = None
) -> ProgramResult:
    program = rewrite_asserts(assert_program(tests))
    # asserts inside a called function (HumanEval's check) may run in loops:
    # their count comes from a reference run (None here: count what runs)
    n_tests = tests.n_tests if tests.n_tests is not None else (None if tests.call else len(program.probes))
    job = {
        "mode": "assert",
        "code": code,
        "entry_point": tests.entry_point,
        "guard": guard,
        "test_code": program.source,
        "time_limit": ASSERT_TIME_LIMIT,
    }
    deadline = min(GROUP_TIME_CAP, ASSERT_TIME_LIMIT * max(n_tests or len(program.probes), 1)) + 2
    output = run_job(job, deadline=deadline, limits=limits)
    return score_assert_records(output, program, n_tests).add_usage([output], _loaded(output.records))


def score_assert_records(output: RunOutput, program: Any, n_tests: int | None) -> ProgramResult:
    load_error = _load_error(output.records)
    details: list[int] = []
    outcomes: list[str | None] = []
    failures: list[Failure] = []
    aborted: str | None = None
    finished = False
    for record in output.records:
        if "exit" in record:
            break
        if "a" in record:
            number = _index(record, "a", len(program.probes))
            if number is None:
                continue
            probe = program.probes[number]
            issue = _record_problem(record)
            ok = False
            if issue is None:
                decoded_ok, values = _decoded(record)
                try:
                    ok = decoded_ok and probe.verdict(values)
                except BaseException:
                    ok = False
                if not ok:
                    if decoded_ok and isinstance(values, list):
                        shown = ", ".join(_short(probe.trusted.get(i, v), 80) for i, v in enumerate(values))
                    else:
                        shown = "?"
                    issue = f"failed (values: {shown})"
            if not ok and len(failures) < MAX_FAILURES_KEPT:
                failures.append(Failure("tests", len(details), f"{probe.source} -> {issue}"))
            details.append(int(ok))
            outcomes.append(_outcome(record, ok))
        elif "abort" in record:
            aborted = f"test code stopped: {record['abort']}"
        elif "done" in record:
            finished = True
    if n_tests is not None:
        details = (details + [0] * n_tests)[:n_tests]
        missing = "error" if load_error or aborted else None
        outcomes = (outcomes + [missing] * n_tests)[:n_tests]
    problem = None if finished or load_error else output.problem()
    status = "pass" if finished and details and all(details) else "fail"
    if not finished and not load_error:
        status = "timeout"
    group = GroupResult("tests", status, details, len(details), _fill_outcomes(outcomes))
    if aborted and not failures:
        failures.append(Failure("tests", len(details), aborted))
    return _overall([group], failures, load_error, problem)


def run_stdio_tests(code: str, tests: StdioTests, *, limits: SandboxLimits | None = None) -> ProgramResult:
    job = {
        "mode": "stdio",
        "code": code,
        "inputs": [stdin for stdin, _ in tests.cases],
        "time_limits": [APPS_TIME_LIMIT] * len(tests.cases),
        "guard": False,
    }
    deadline = min(GROUP_TIME_CAP * 2, APPS_TIME_LIMIT * len(tests.cases)) + 2
    output = run_job(job, deadline=deadline, limits=limits)
    load_error = _load_error(output.records)
    details = [0] * len(tests.cases)
    outcomes: list[str | None] = [None] * len(tests.cases)
    if load_error is not None:
        outcomes = ["error"] * len(tests.cases)
    failures: list[Failure] = []
    seen = 0
    finished = any("done" in r for r in output.records)
    for record in output.records:
        if "exit" in record:
            break
        index = _index(record, "i", len(tests.cases))
        if index is None or not isinstance(record.get("stdout"), str) or outcomes[index] is not None:
            continue
        seen += 1
        expected = tests.cases[index][1]
        issue = _record_problem(record)
        ok = issue is None and apps_stdout_matches(record["stdout"], expected)
        details[index] = int(ok)
        outcomes[index] = _outcome(record, ok)
        if not ok and len(failures) < MAX_FAILURES_KEPT:
            issue = issue or f"printed {_short(record['stdout'])}, expected {_short(expected)}"
            failures.append(Failure("tests", index, f"input {_short(tests.cases[index][0], 80)}: {issue}"))
    status = "pass" if finished and all(details) else ("fail" if finished or load_error else "timeout")
    problem = None if finished or load_error else output.problem()
    group = GroupResult("tests", status, details, seen, _fill_outcomes(outcomes))
    executed = any(o in ("pass", "fail") for o in outcomes)  # one case ran to its end without raising
    return _overall([group], failures, load_error, problem).add_usage([output], executed)


def run_tests(
    code: str,
    tests: Tests,
    expected: ExpectedOutputs | None = None,
    *,
    guard: bool = True,
    limits: SandboxLimits | None = None,
) -> ProgramResult:
    """Dispatch on the suite's kind; ``expected`` is required for call tests."""
    if isinstance(tests, CallTests):
        if expected is None:
            raise ValueError("call tests need expected outputs")
        return run_call_tests(code, tests, expected, guard=guard, limits=limits)
    if isinstance(tests, AssertTests):
        return run_assert_tests(code, tests, guard=guard, limits=limits)
    return run_stdio_tests(code, tests, limits=limits)
