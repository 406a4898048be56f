from __future__ import annotations

import math

import pytest

from promis_repro.metrics import pass_at_k, summarize


def test_pass_at_k_unbiased_estimator():
    # n=5, c=2: pass@1 = 0.4; pass@2 = 1 - C(3,2)/C(5,2) = 0.7
    result = pass_at_k({"a": [1, 1, 0, 0, 0]}, ks=(1, 2, 10))
    assert result == {"pass@1": pytest.approx(0.4), "pass@2": pytest.approx(0.7)}
    assert pass_at_k({"a": [0, 0], "b": [1, 0]}, ks=(1, 2)) == {"pass@1": 0.25, "pass@2": 0.5}


def test_summary_means_over_tasks_then_samples():
    rows = [
        {"task_id": "a", "passed": True, "soft_pass": 1.0, "passed_base": True, "soft_pass_base": 1.0},
        {"task_id": "a", "passed": False, "soft_pass": 0.5, "passed_base": True, "soft_pass_base": 1.0},
        {"task_id": "b", "passed": False, "soft_pass": 0.0, "passed_base": False, "soft_pass_base": 0.2},
    ]
    summary = summarize(rows)
    assert summary["n_tasks"] == 2 and summary["n_samples"] == 3
    assert math.isclose(summary["pass_at_1"], 0.25)
    assert math.isclose(summary["soft_pass_at_1"], (0.75 + 0.0) / 2)
    assert math.isclose(summary["pass_at_1_base"], 0.5)
    assert math.isclose(summary["soft_pass_at_1_base"], 0.6)
