"""APPS scoring: stdin/stdout programs and call-based functions, with hand-written solutions."""

from __future__ import annotations

import pytest

from promis_repro.data.registry import load_benchmark
from promis_repro.evaluation.compare import apps_stdout_matches
from promis_repro.evaluation.evaluator import evaluate_program

QAQ = (
    "s = input().strip()\n"
    "n = len(s)\n"
    "print(sum(1 for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n)\n"
    "          if s[i] + s[j] + s[k] == 'QAQ'))\n"
)
QAQ_OPEN0 = "import sys\ns = open(0).read().split()[0]\n" + QAQ.split("\n", 1)[1] + "exit()\n"


@pytest.fixture(scope="module")
def apps(data_dir):
    return {t.task_id: t for t in load_benchmark("apps", data_dir)}


@pytest.mark.parametrize("code", [QAQ, QAQ_OPEN0], ids=["input", "open0-exit"])
def test_stdio_solution_passes(apps, code):
    result = evaluate_program(apps["1607"], code)
    assert result.status == "pass", result.feedback()
    assert result.soft_pass == 1.0


def test_stdio_wrong_and_crashing_programs_fail(apps):
    wrong = evaluate_program(apps["1607"], "print(4)\n")
    assert wrong.status == "fail" and 0 < wrong.soft_pass < 1
    crash = evaluate_program(apps["1607"], "print(1 / 0)\n")
    assert crash.status == "fail" and crash.soft_pass == 0
    assert "ZeroDivisionError" in crash.feedback()


def test_call_based_solution_passes_and_wrong_one_fails(apps):
    good = evaluate_program(apps["2798"], "def to_alternating_case(string):\n    return string.swapcase()\n")
    assert good.status == "pass", good.feedback()
    bad = evaluate_program(apps["2798"], "def to_alternating_case(string):\n    return string.upper()\n")
    assert bad.status == "fail" and 0 < bad.soft_pass < 1


def test_visible_tests_are_the_sample_io(apps):
    task = apps["1607"]
    assert task.visible_tests.count() < task.hidden_tests.count()
    assert evaluate_program(task, QAQ, task.visible_tests).passed


def test_stdout_comparison_rules():
    assert apps_stdout_matches("3\n", "3")
    assert apps_stdout_matches("1 2  \n3\n\n", "1 2\n3")
    assert apps_stdout_matches("0.3333333", "0.33333333")
    assert not apps_stdout_matches("3 4", "3")
    assert not apps_stdout_matches("", "3")
