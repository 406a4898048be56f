"""Cross-check our verdicts against EvalPlus 0.3.1's own ``check_correctness`` (fast_check off).

Used by the tests and by ``bench/evaluate_throughput.py``. ``mutants`` derives
deliberately broken programs from a canonical solution; ``evalplus_verdict``
runs EvalPlus's evaluator on one program; ``compare`` says whether the base
and plus statuses and the per-input 0/1 details agree. EvalPlus returns
details only up to the last input it reached; we report every input (0 where
none was reached), so EvalPlus's list is compared zero-padded.
"""

from __future__ import annotations

from typing import Any

from promis_repro.data.task import CallTests, Task

_WRAPPER = """

_promis_original = {entry}


def {entry}(*args):
{body}
"""

MUTATION_BODIES = {
    "returns_none": "    return None",
    "raises_on_odd_repr": (
        "    if len(repr(args)) % 2:\n        raise ValueError('mutant')\n    return _promis_original(*args)"
    ),
    "float_nudged": (
        "    out = _promis_original(*args)\n    return out * (1 + 1e-9) + 1e-12 if isinstance(out, float) else out"
    ),
    "float_off": ("    out = _promis_original(*args)\n    return out + 1e-3 if isinstance(out, float) else out"),
    "tuple_as_list": ("    out = _promis_original(*args)\n    return list(out) if isinstance(out, tuple) else out"),
    "off_by_one": (
        "    out = _promis_original(*args)\n"
        "    return out + 1 if isinstance(out, int) and not isinstance(out, bool) else out"
    ),
    "truthy_flip": (
        "    out = _promis_original(*args)\n"
        "    return (not out) if isinstance(out, bool) and len(repr(args)) % 3 == 0 else out"
    ),
}


def mutants(canonical: str, entry_point: str) -> dict[str, str]:
    """Named broken variants of ``canonical`` (plus a syntax error and an exit at import)."""
    variants = {"canonical": canonical}
    for name, body in MUTATION_BODIES.items():
        variants[name] = canonical + _WRAPPER.format(entry=entry_point, body=body)
    variants["syntax_error"] = canonical + "\ndef broken(:\n    pass\n"
    variants["exit_at_import"] = "import sys\nsys.exit(0)\n" + canonical
    return variants


#: correct but worse: quadratic busy work in the input's size (capped: a few ms a call, far inside any
#: time limit) before the canonical answer
SLOW_BODY = (
    "    size = min(len(repr(args)), 300) + 300\n"
    "    waste = sum(1 for _i in range(size) for _j in range(size))\n"
    "    return _promis_original(*args) if waste >= 0 else None"
)


def correct_but_worse(canonical: str, entry_point: str) -> dict[str, str]:
    """Correct variants of ``canonical`` that the levels should mark down (``evaluation/levels.py``):
    ``slow`` (quadratic where the canonical is not) and ``badly_styled`` (unused imports on one line,
    trailing whitespace, an over-long line: lint and security findings)."""
    styled = "\n".join(line + "  " if line.strip() else line for line in canonical.splitlines())
    return {
        "slow": canonical + _WRAPPER.format(entry=entry_point, body=SLOW_BODY),
        "badly_styled": "import os, sys, subprocess, pickle\n" + "# " + "x" * 100 + "\n" + styled + "\n",
    }


def evalplus_problem(task: Task) -> dict[str, Any]:
    tests = task.hidden_tests
    assert isinstance(tests, CallTests)
    return {
        "task_id": task.task_id,
        "entry_point": tests.entry_point,
        "base_input": tests.groups["base"],
        "plus_input": tests.groups["plus"],
        "atol": tests.atol,
    }


def evalplus_expected(task: Task) -> dict[str, Any]:
    """EvalPlus's ground truth for one task, computed exactly as its ``get_groundtruth`` does."""
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.gen.util import trusted_exec

    problem = evalplus_problem(task)
    not_none = task.benchmark == "mbppplus" and problem["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS
    expected: dict[str, Any] = {}
    for group in ("base", "plus"):
        expected[group], expected[f"{group}_time"] = trusted_exec(
            task.reference_solution,
            problem[f"{group}_input"],
            problem["entry_point"],
            record_time=True,
            output_not_none=not_none,
        )
    return expected


def evalplus_verdict(task: Task, solution: str, expected: dict[str, Any]) -> dict[str, Any]:
    from evalplus.evaluate import check_correctness

    dataset = "mbpp" if task.benchmark == "mbppplus" else "humaneval"
    result = check_correctness(dataset, 0, evalplus_problem(task), solution, expected, fast_check=False)
    return {group: (result[group][0], [int(x) for x in result[group][1]]) for group in ("base", "plus")}


def compare(task: Task, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Disagreements between our result row and EvalPlus's verdict (empty when they agree)."""
    tests = task.hidden_tests
    assert isinstance(tests, CallTests)
    problems = []
    for group in ("base", "plus"):
        status, details = theirs[group]
        padded = details + [0] * (len(tests.groups[group]) - len(details))
        if ours[f"{group}_status"] != status:
            problems.append(f"{group} status: ours {ours[f'{group}_status']}, EvalPlus {status}")
        if ours[group] != padded:
            diff = [i for i, (a, b) in enumerate(zip(ours[group], padded)) if a != b]
            problems.append(f"{group} details differ at inputs {diff[:10]}")
    return problems
