"""The normalized task record every benchmark loader produces, and the three kinds of test suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Difficulty = Literal["introductory", "interview", "competition"] | None


@dataclass(frozen=True)
class CallTests:
    """Call ``entry_point(*args)`` per input and compare the return value in the harness.

    ``groups`` maps a group name ("base", "plus", or "tests") to its inputs.
    ``expected`` holds given expected outputs (APPS); when None they are
    computed by running the reference solution (EvalPlus's protocol).
    ``oracle`` names the comparison: "evalplus-mbpp", "evalplus-humaneval"
    (EvalPlus 0.3.1 semantics incl. special oracles) or "apps".
    """

    entry_point: str
    groups: dict[str, list[Any]]
    atol: float = 0.0
    oracle: str = "evalplus-mbpp"
    expected: dict[str, list[Any]] | None = None
    kind: Literal["call"] = "call"

    def count(self) -> int:
        return sum(len(inputs) for inputs in self.groups.values())


@dataclass(frozen=True)
class AssertTests:
    """Assert statements (MBPP's test_list, HumanEval's ``check``), each rewritten into a probe.

    ``asserts`` are the test statements; ``setup`` runs first in the test
    namespace; ``call`` (e.g. ``check(f)``) runs after them. ``n_tests`` is the
    number of assertion executions a reference solution produces (one per
    statement unless asserts sit in a loop or a function).
    """

    setup: str
    asserts: list[str]
    call: str | None = None
    entry_point: str | None = None
    n_tests: int | None = None
    kind: Literal["assert"] = "assert"

    def count(self) -> int:
        return self.n_tests if self.n_tests is not None else len(self.asserts)


@dataclass(frozen=True)
class StdioTests:
    """Whole programs fed ``stdin``; stdout compared with APPS's tolerant line/token rules."""

    cases: list[tuple[str, str]]
    kind: Literal["stdio"] = "stdio"

    def count(self) -> int:
        return len(self.cases)


Tests = CallTests | AssertTests | StdioTests


@dataclass(frozen=True)
class Task:
    benchmark: str
    task_id: str
    prompt: str
    entry_point: str | None
    starter_code: str
    visible_tests: Tests
    hidden_tests: Tests
    reference_solution: str | None
    difficulty: Difficulty = None
    source_hash: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
