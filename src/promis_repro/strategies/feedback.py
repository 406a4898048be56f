"""Test-time feedback: which tests a strategy may see, and running a candidate on them.

``visible`` (default): only the tests the prompt itself shows (MBPP's shown
assert, HumanEval's docstring examples, APPS's sample I/O). ``selfgen``: asserts
the generator writes for itself (as Reflexion and EPiC do). ``oracle``: the
hidden tests that also score the final solution, the paper's apparent
protocol; allowed, but everything it produces is marked leaky.

Strategies never hold the task's hidden tests: they get ``public_view(task)``
(hidden tests and reference solution removed) and a ``FeedbackSuite`` whose
tests were chosen here. Only the harness, after the strategy has finished,
scores the final solution on the hidden tests (``promis-repro evaluate``).
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from promis_repro.data.task import AssertTests, CallTests, StdioTests, Task, Tests
from promis_repro.errors import UserError
from promis_repro.evaluation.evaluator import evaluate_program, reference_test_count
from promis_repro.grid import FEEDBACK_MODES, LEAKY_FEEDBACK

if TYPE_CHECKING:
    from promis_repro.evaluation.levels import LevelSettings, ReferenceProfile

FEEDBACK_CHARS = 1200
SELFGEN_TEMPLATE = (
    "Write {n} different test cases for the Python function {function} described below, as assert "
    "statements of the form `assert {function}(...) == ...`, one per line, in a ```python block. "
    "Write only the asserts.\n\n{description}\n"
)
SELFGEN_STDIO_TEMPLATE = (
    "Write {n} different test cases for the program described below. For each test case write the "
    "standard input between <input> and </input> and the expected standard output between <output> and "
    "</output>.\n\n{description}\n"
)


def check_mode(mode: str) -> str:
    if mode not in FEEDBACK_MODES:
        raise UserError(f"unknown feedback mode {mode!r}; known: {', '.join(FEEDBACK_MODES)}")
    return mode


def public_view(task: Task) -> Task:
    """The task as a strategy may see it: no hidden tests, no reference solution."""
    return replace(task, hidden_tests=None, reference_solution=None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Feedback:
    passed: bool
    soft: float
    n_tests: int
    n_passed: int
    status: str
    text: str
    levels: dict[str, Any] | None = None  # the five levels on this suite, when asked for (the multi reward)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "soft": round(self.soft, 6),
            "n_tests": self.n_tests,
            "n_passed": self.n_passed,
            "status": self.status,
            "text": self.text,
        }


NO_TESTS = Feedback(False, 0.0, 0, 0, "no-tests", "no feedback tests are available for this task")


def _has_tests(tests: Tests | None) -> bool:
    if tests is None:
        return False
    if isinstance(tests, AssertTests):
        return bool(tests.asserts)
    if isinstance(tests, StdioTests):
        return bool(tests.cases)
    return tests.count() > 0


class FeedbackSuite:
    """The feedback tests of one task under one mode; the full task stays on the harness side."""

    def __init__(self, task: Task, mode: str, tests: Tests | None) -> None:
        self._task = task
        # "train": a training-pool task's own tests (never an evaluation task's), used by lpo and the agents
        self.mode = mode if mode == "train" else check_mode(mode)
        if isinstance(tests, AssertTests) and tests.call and task.reference_solution is not None:
            tests = reference_test_count(task, tests)
        self.tests = tests if _has_tests(tests) else None
        self.leaky = mode == LEAKY_FEEDBACK
        self._reference: ReferenceProfile | None = None  # the canonical solution on these tests, once measured

    @property
    def n_tests(self) -> int:
        return self.tests.count() if self.tests is not None else 0

    def evaluate(self, code: str, levels: LevelSettings | None = None) -> Feedback:
        """The program's result on these tests; with ``levels``, its five levels too (efficiency against the
        task's canonical solution, measured once per suite; none for a public view, which has no solution)."""
        if self.tests is None:
            return NO_TESTS
        result = evaluate_program(self._task, code, self.tests)
        text = result.feedback()
        if len(text) > FEEDBACK_CHARS:
            text = text[:FEEDBACK_CHARS] + " ..."
        scored = None
        if levels is not None:
            from promis_repro.evaluation.levels import program_levels

            reference = self._reference_profile(levels)
            tests = self.tests
            scored = program_levels(
                code, result, reference, levels, rerun=lambda: evaluate_program(self._task, code, tests)
            )
        return Feedback(result.passed, result.soft_pass, result.n_tests, result.n_passed, result.status, text, scored)

    def _reference_profile(self, levels: LevelSettings) -> ReferenceProfile | None:
        from promis_repro.evaluation.levels import reference_profile

        solution = self._task.reference_solution
        if solution is None or self.tests is None:
            return None
        if self._reference is None:
            tests = self.tests
            self._reference = reference_profile(
                lambda: evaluate_program(self._task, solution, tests), levels.reference_repeats
            )
        return self._reference

    def describe(self) -> dict[str, Any]:
        shown: Any = None
        if isinstance(self.tests, AssertTests) and self.mode != "oracle":
            shown = list(self.tests.asserts)
        return {"mode": self.mode, "leaky": self.leaky, "n_tests": self.n_tests, "tests": shown}


def fixed_suite(task: Task, mode: str) -> FeedbackSuite:
    """The suite for ``visible`` or ``oracle``; ``selfgen`` suites come from ``selfgen_suite``.

    Only the oracle suite keeps the full task (its expected outputs come from the reference
    solution); a visible suite holds the public view, so not even ``suite._task`` leads to hidden tests.
    """
    if check_mode(mode) == "oracle":
        return FeedbackSuite(task, mode, task.hidden_tests)
    if mode == "visible":
        return FeedbackSuite(public_view(task), mode, task.visible_tests)
    raise ValueError("selfgen suites are built from generated tests")


def _compiles(statement: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(statement)
    except (SyntaxError, ValueError):
        return False
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert)


def parse_generated_asserts(text: str, function: str, limit: int) -> list[str]:
    """Single-line asserts that call ``function``, compile, and are not duplicates (first ``limit``)."""
    found: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("assert ") and f"{function}(" in line and _compiles(line) and line not in found:
            found.append(line)
        if len(found) >= limit:
            break
    return found


def parse_generated_io(text: str, limit: int) -> list[tuple[str, str]]:
    pairs = re.findall(r"<input>\s*\n?(.*?)</input>\s*<output>\s*\n?(.*?)</output>", text, re.DOTALL)
    cases = []
    for stdin, stdout in pairs[:limit]:
        if stdout.strip():
            cases.append((stdin.strip() + "\n", stdout.strip() + "\n"))
    return cases


def selfgen_suite(task: Task, generated: str, limit: int) -> FeedbackSuite:
    """A suite from the generator's own test-writing answer (asserts, or I/O pairs for stdin tasks)."""
    if task.entry_point and not isinstance(task.visible_tests, StdioTests):
        asserts = parse_generated_asserts(generated, task.entry_point.split("().")[0], limit)
        setup = task.visible_tests.setup if isinstance(task.visible_tests, AssertTests) else ""
        tests: Tests | None = AssertTests(setup, asserts, entry_point=task.entry_point) if asserts else None
    else:
        cases = parse_generated_io(generated, limit)
        tests = StdioTests(cases) if cases else None
    if isinstance(tests, CallTests):  # pragma: no cover - never built here
        raise AssertionError
    return FeedbackSuite(task, "selfgen", tests)


def selfgen_request(task: Task, description: str, n: int) -> str:
    if task.entry_point and not isinstance(task.visible_tests, StdioTests):
        return SELFGEN_TEMPLATE.format(n=n, function=task.entry_point, description=description.strip())
    return SELFGEN_STDIO_TEMPLATE.format(n=n, description=description.strip())


#: how training episodes get feedback and reward (``train --train-feedback``)
TRAIN_FEEDBACK_MODES = ("visible", "all")


def check_train_feedback(mode: str) -> str:
    if mode not in TRAIN_FEEDBACK_MODES:
        raise UserError(f"unknown training feedback mode {mode!r}; known: {', '.join(TRAIN_FEEDBACK_MODES)}")
    return mode


def held_out_tests(task: Task) -> Tests:
    """A training task's tests that its prompt does not show: the reward's tests under ``visible``.

    For MBPP (the pools' benchmark) the hidden asserts minus the shown one; a task whose every test is
    shown falls back to all of its tests.
    """
    hidden, visible = task.hidden_tests, task.visible_tests
    if isinstance(hidden, AssertTests) and isinstance(visible, AssertTests):
        rest = [a for a in hidden.asserts if a not in set(visible.asserts)]
        if rest:
            return replace(hidden, asserts=rest, n_tests=None)
    return hidden


def without_visible_tests(task: Task) -> Task:
    """The task as a test-time task without visible tests comes: no shown test in the prompt, none to run."""
    tests = task.visible_tests
    empty: Tests = (
        StdioTests([]) if isinstance(tests, StdioTests) else AssertTests("", [], entry_point=task.entry_point)
    )
    return replace(task, visible_tests=empty)


def training_suites(task: Task, mode: str, show_visible: bool = True) -> tuple[FeedbackSuite, FeedbackSuite]:
    """(the suite whose results the policy sees, the suite the reward and selection score on) for a training task.

    ``visible`` (default): feedback from the visible test(s) only, exactly as at test time (none when the
    task is presented without them), reward from the task's held-out tests. ``all``: both from every
    test of the task (the paper's protocol).
    """
    if check_train_feedback(mode) == "all":
        suite = FeedbackSuite(task, "train", task.hidden_tests)
        return suite, suite
    presented = task if show_visible else without_visible_tests(task)
    return fixed_suite(presented, "visible"), FeedbackSuite(task, "train", held_out_tests(task))


def no_visible_share(tasks: list[Task]) -> float:
    """The share of ``tasks`` that come without a visible test (31 of HumanEval+'s 164, for one)."""
    return sum(not _has_tests(t.visible_tests) for t in tasks) / len(tasks) if tasks else 0.0
