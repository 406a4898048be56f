"""Per seed, per task and per cell (model, benchmark, strategy, feedback) views of a results tree.

- ``per_seed.csv``: one row per cell and seed: Pass@1, SoftPass@1 (and their base-test variants) and
  the mean cost per task (generator and rewriter calls, tokens, model seconds).
- ``per_task.csv``: one row per cell, seed and task: strict pass and SoftPass of that task (the mean
  over its samples when there are several), and the APPS difficulty.
- ``budget_curve.csv``: one row per cell, seed and k = 1..B: Pass@1 and SoftPass@1 of the best-so-far
  candidate after k generator calls (``analysis/budget.py``); ``per_task_budget.csv``: per task at k = B.
- ``cells.csv`` / ``cells.json``: one row per cell: mean and sample standard deviation over seeds,
  the per-task majority over seeds (a task counts as solved when it passes in more than half of the
  seeds), mean cost, and the protocol (feedback, leaky, budgets, reward formula, data hash).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from promis_repro.analysis.budget import curve_rows
from promis_repro.analysis.tree import write_stage_provenance
from promis_repro.errors import UserError
from promis_repro.grid import strategy_rank
from promis_repro.io import atomic_write_json, atomic_write_text, read_json, read_jsonl

CELL_KEYS = ("model", "benchmark", "strategy", "feedback")
COST_KEYS = ("generator_calls", "rewriter_calls", "tokens", "model_seconds")
METRIC_KEYS = ("pass_at_1", "soft_pass_at_1", "pass_at_1_base", "soft_pass_at_1_base")
# metrics.json's ``levels`` (evaluation/levels.py) besides ``tests`` (= SoftPass@1); NaN where not measured
LEVEL_KEYS = ("syntax", "execution", "quality", "efficiency")
REQUIRED = (*CELL_KEYS, "seed", "leaky", "pass_at_1", "soft_pass_at_1")


def _per_seed_row(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    missing = [key for key in REQUIRED if metrics.get(key) is None]
    if missing:
        raise UserError(f"{path}: metrics without {', '.join(missing)}")
    row = {key: metrics[key] for key in (*CELL_KEYS, "seed", "leaky")}
    row["protocol"] = metrics.get("protocol", "ours")
    row["n_tasks"] = metrics.get("n_tasks")
    row.update({key: metrics.get(key) for key in METRIC_KEYS})
    levels = metrics.get("levels") or {}
    row.update({key: levels.get(key) for key in LEVEL_KEYS})
    row.update({key: (metrics.get("cost") or {}).get(key) for key in COST_KEYS})
    return row


def _per_task_rows(cell: dict[str, Any], results: Path) -> list[dict[str, Any]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for number, row in read_jsonl(results):
        if "task_id" not in row or "passed" not in row or "soft_pass" not in row:
            raise UserError(f"{results}:{number}: a result row needs task_id, passed and soft_pass")
        soft = row["soft_pass"]
        if not isinstance(soft, int | float) or not 0 <= soft <= 1 or not isinstance(row["passed"], bool):
            raise UserError(f"{results}:{number}: passed must be true/false and soft_pass within [0, 1]")
        grouped[str(row["task_id"])].append(row)
    return [
        {
            **{key: cell[key] for key in (*CELL_KEYS, "seed")},
            "task_id": task_id,
            "passed": float(np.mean([bool(r["passed"]) for r in rows])),
            "soft_pass": float(np.mean([float(r["soft_pass"]) for r in rows])),
            "difficulty": rows[0].get("difficulty"),
        }
        for task_id, rows in grouped.items()
    ]


def _clean(value: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, so the JSON twin of every CSV is strict JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{key: _clean(value) for key, value in row.items()} for row in frame.to_dict(orient="records")]


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6g")
    atomic_write_text(path, buffer.getvalue())


def sort_cells(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    order = frame["strategy"].map(strategy_rank)
    return (
        frame.assign(_rank=order)
        .sort_values(["benchmark", "feedback", "model", "_rank", *(key for key in ("seed", "k") if key in frame)])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def apps_pass_by_difficulty(per_task: pd.DataFrame) -> pd.DataFrame:
    """APPS Pass@1 per model, strategy, feedback, seed and difficulty (tables and figures share it)."""
    from promis_repro.data.apps import DIFFICULTIES

    tasks = per_task[(per_task["benchmark"] == "apps") & per_task["difficulty"].isin(DIFFICULTIES)]
    keys = ["model", "strategy", "feedback", "seed", "difficulty"]
    return tasks.groupby(keys)["passed"].mean().reset_index().rename(columns={"passed": "pass_at_1"})


def _cells(per_seed: pd.DataFrame, per_task: pd.DataFrame, protocol: dict[tuple, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    empty = per_task.iloc[0:0]
    by_cell = dict(tuple(per_task.groupby(list(CELL_KEYS), sort=False))) if len(per_task) else {}
    for key, group in per_seed.groupby(list(CELL_KEYS), sort=False):
        tasks = by_cell.get(key, empty)
        majority = tasks.groupby("task_id")["passed"].mean().gt(0.5).mean() if len(tasks) else float("nan")
        row: dict[str, Any] = dict(zip(CELL_KEYS, key))
        row["leaky"] = bool(group["leaky"].any())
        row["seeds"] = len(group)
        row["seed_list"] = " ".join(str(s) for s in sorted(group["seed"]))
        row["n_tasks"] = int(tasks["task_id"].nunique()) if len(tasks) else group["n_tasks"].max()
        for metric in (*METRIC_KEYS, *LEVEL_KEYS):
            values = group[metric].dropna().astype(float)
            row[f"{metric}_mean"] = values.mean() if len(values) else float("nan")
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else 0.0
        row["majority_pass_at_1"] = float(majority)
        for cost in COST_KEYS:
            values = group[cost].dropna().astype(float)
            row[f"{cost}_mean"] = values.mean() if len(values) else float("nan")
        row.update(protocol[key])
        rows.append(row)
    return sort_cells(pd.DataFrame(rows))


def aggregate(metrics_files: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> pd.DataFrame:
    """Write ``per_seed.csv``, ``per_task.csv``, ``cells.csv`` and ``cells.json`` to ``out``."""
    if not metrics_files:
        raise UserError("aggregate: no metrics.json files given")
    per_seed, per_task, curve, at_budget = [], [], [], []
    protocol: dict[tuple, dict[str, Any]] = {}
    seen: dict[tuple, Path] = {}
    for path in map(Path, metrics_files):
        metrics = read_json(path)
        if not isinstance(metrics, dict):
            raise UserError(f"{path}: metrics must be a JSON object")
        row = _per_seed_row(path, metrics)
        identity = tuple(row[key] for key in (*CELL_KEYS, "seed"))
        if identity in seen:
            raise UserError(f"{path}: the same cell and seed as {seen[identity]}")
        seen[identity] = path
        per_seed.append(row)
        results = path.with_name("results.jsonl")
        if not results.exists():
            raise UserError(f"{path}: no results.jsonl beside it (evaluate the cell first)")
        task_rows = _per_task_rows(row, results)
        per_task.extend(task_rows)
        candidates = path.with_name("candidates.jsonl")
        budget = (metrics.get("budget") or {}).get("generator_calls")
        if budget:
            if not candidates.exists():
                raise UserError(f"{path}: no candidates.jsonl beside it (evaluated before candidates were scored); "
                                "rerun promis-repro evaluate-cell on it")  # fmt: skip
            cell = {key: row[key] for key in (*CELL_KEYS, "seed")}
            rows, task_scores = curve_rows(cell, candidates, [r["task_id"] for r in task_rows], int(budget))
            curve.extend(rows)
            at_budget.extend(task_scores)
        hashes = (metrics.get("provenance") or {}).get("data_hashes") or {}
        protocol.setdefault(
            tuple(row[key] for key in CELL_KEYS),
            {
                "protocol": metrics.get("protocol", "ours"),
                "budget": json.dumps(metrics.get("budget"), sort_keys=True),
                "reward": metrics.get("reward"),
                "data_hash": hashes.get(row["benchmark"]),
            },
        )
    seeds = sort_cells(pd.DataFrame(per_seed))
    columns = [*CELL_KEYS, "seed", "task_id", "passed", "soft_pass", "difficulty"]
    tasks = pd.DataFrame(per_task, columns=columns).sort_values([*CELL_KEYS, "seed", "task_id"]).reset_index(drop=True)
    cells = _cells(seeds, tasks, protocol)
    curve_columns = [*CELL_KEYS, "seed", "k", "pass_at_1", "soft_pass_at_1", "n_tasks"]
    budget_columns = [*CELL_KEYS, "seed", "task_id", "k", "passed", "soft_pass"]
    out = Path(out)
    write_csv(out / "per_seed.csv", seeds)
    write_csv(out / "per_task.csv", tasks)
    write_csv(out / "budget_curve.csv", sort_cells(pd.DataFrame(curve, columns=curve_columns)))
    write_csv(out / "per_task_budget.csv", pd.DataFrame(at_budget, columns=budget_columns))
    write_csv(out / "cells.csv", cells)
    atomic_write_json(out / "cells.json", records(cells))
    write_stage_provenance(out, "aggregate", metrics_files, {"files": len(metrics_files)})
    return cells
