"""Pass@1, SoftPass@1 and unbiased pass@k.

Pass@1: a sample passes when it passes every hidden test (for the plus
benchmarks: base and plus). SoftPass@1: the fraction of hidden tests a sample
passes (base and plus inputs together), averaged over a task's samples and then
over tasks. The ``_base`` variants count base tests only. pass@k uses the
unbiased estimator of Chen et al. (2021), as implemented by EvalPlus.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from evalplus.eval import estimate_pass_at_k

PASS_AT_K = (1, 10, 100)


def per_task(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        grouped[row["task_id"]].append(float(row[key]))
    return dict(grouped)


def mean_over_tasks(grouped: Mapping[str, list[float]]) -> float:
    if not grouped:
        return 0.0
    return float(np.mean([np.mean(values) for values in grouped.values()]))


def pass_at_k(grouped_passes: Mapping[str, list[float]], ks: Iterable[int] = PASS_AT_K) -> dict[str, float]:
    """Unbiased pass@k for every k that every task has at least k samples for."""
    if not grouped_passes:
        return {}
    totals = np.array([len(v) for v in grouped_passes.values()])
    correct = np.array([int(sum(v)) for v in grouped_passes.values()])
    return {f"pass@{k}": float(estimate_pass_at_k(totals, correct, k).mean()) for k in ks if totals.min() >= k}


def summarize(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    from promis_repro.evaluation.levels import summarize_levels

    passed = per_task(rows, "passed")
    summary = {
        "n_tasks": len(passed),
        "n_samples": len(rows),
        "pass_at_1": mean_over_tasks(passed),
        "soft_pass_at_1": mean_over_tasks(per_task(rows, "soft_pass")),
        "pass_at_1_base": mean_over_tasks(per_task(rows, "passed_base")),
        "soft_pass_at_1_base": mean_over_tasks(per_task(rows, "soft_pass_base")),
        "pass_at_k": pass_at_k(passed),
    }
    levels = summarize_levels(rows)
    if levels is not None:  # rows scored with their levels (evaluation/levels.py)
        summary["levels"] = levels
    return summary
