"""Budget curves: what each strategy would answer after k generator calls, k = 1..B, without new generation.

Every candidate a strategy produced is in its trajectory, with the budgeted generator calls spent when
it was written (``budget_calls``), the visible feedback the strategy saw, and (from ``evaluate-cell``)
its hidden-test score (``candidates.jsonl``). After k calls the answer is the best-so-far candidate
by visible feedback among those written within k calls (the earliest on ties, as ``ctx.best`` does);
a task with no candidate yet scores 0. One common rule for every strategy (the harness runs every
candidate on the visible tests), so the curves compare strategies at equal spend. It is the own
answer of the best-by-feedback strategies; Reflexion and self-correction answer with their last
candidate (self-correction sees no tests) and EPiC with the best of its last population, so for them
the curve shows the common rule, not their own answer.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from promis_repro.io import read_jsonl


def best_so_far(candidates: list[dict[str, Any]], k: int) -> dict[str, Any] | None:
    """The candidate a strategy holds after ``k`` budgeted generator calls (None before its first)."""
    eligible = [c for c in candidates if c["budget_calls"] is not None and c["budget_calls"] <= k]
    if not eligible:
        return None
    return max(eligible, key=lambda c: (c["feedback_soft"], -c["step"]))


def curve_rows(
    cell: dict[str, Any], candidates_path: Path, task_ids: list[str], budget: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Pass@1 and SoftPass@1 per k = 1..budget for one cell and seed, per-task scores at k = budget)."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, row in read_jsonl(candidates_path):
        by_task[str(row["task_id"])].append(row)
    curve, at_budget = [], []
    for k in range(1, budget + 1):
        passed = soft = 0.0
        for task_id in task_ids:
            chosen = best_so_far(by_task.get(task_id, []), k)
            task_passed = float(bool(chosen and chosen["passed"]))
            task_soft = float(chosen["soft_pass"]) if chosen else 0.0
            passed, soft = passed + task_passed, soft + task_soft
            if k == budget:
                at_budget.append({**cell, "task_id": task_id, "k": k, "passed": task_passed, "soft_pass": task_soft})
        n = max(1, len(task_ids))
        curve.append({**cell, "k": k, "pass_at_1": passed / n, "soft_pass_at_1": soft / n, "n_tasks": len(task_ids)})
    return curve, at_budget
