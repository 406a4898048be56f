"""The report's leakage audit: for each trained agent, the tasks it trained and was selected on
(``training.json``) against each benchmark's evaluated tasks (``aggregate/per_task.csv``).

Three kinds of match are counted: the same MBPP id (MBPP, MBPP sanitized and MBPP+ share MBPP's
ids), the same normalized text, and MiniLM cosine similarity at or above the threshold the pools
were decontaminated with. Every count must be zero; the run stage refuses the first two before a
cell runs (``data/leakage.py``), and the pools left out the third when they were built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from promis_repro.analysis.aggregate import write_csv
from promis_repro.analysis.table_format import Table
from promis_repro.analysis.tree import require_files, write_stage_provenance
from promis_repro.data.leakage import DECONTAMINATION, PoolTask, find_matches
from promis_repro.errors import UserError
from promis_repro.grid import AGENT_TEMPLATE, LEAKAGE_AUDIT
from promis_repro.io import atomic_write_text, read_json

COUNTS = ("id", "text", "embedding")


def _agents(root: Path) -> list[tuple[Path, dict]]:
    pattern = AGENT_TEMPLATE.format(agent="*", model="*", seed="*") + "/training.json"
    return [(path, read_json(path)) for path in sorted(root.glob(pattern))]


def audit_frame(results: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None) -> tuple[pd.DataFrame, float]:
    """One row per trained agent and evaluated benchmark with the number of matches of each kind; the threshold."""
    from promis_repro.data.registry import load_benchmark

    root = Path(results)
    per_task_path = root / "aggregate" / "per_task.csv"
    require_files([per_task_path], f"`promis-repro aggregate --results {root}`")
    per_task = pd.read_csv(per_task_path, dtype={"task_id": str})
    evaluated = {b: set(group["task_id"]) for b, group in per_task.groupby("benchmark")}
    split = root / "data" / DECONTAMINATION
    settings = read_json(split) if split.exists() else {}
    threshold, embedder = float(settings.get("threshold", 0.9)), str(settings.get("embedder", "all-minilm-l6-v2"))
    mbpp = {t.task_id: t.description for t in load_benchmark("mbpp", data_dir)}
    tasks = {b: [t for t in load_benchmark(b, data_dir) if t.task_id in ids] for b, ids in evaluated.items()}
    rows = []
    for path, training in _agents(root):
        if "train_ids" not in training or "selection_ids" not in training:
            raise UserError(f"{path}: no train_ids/selection_ids (written before they were recorded); retrain it")
        pool = [
            PoolTask(name, str(i), mbpp[str(i)]) for name in ("train", "selection") for i in training[f"{name}_ids"]
        ]
        agent, model, seed = path.parts[-4], path.parts[-3], path.parts[-2]
        for benchmark, benchmark_tasks in sorted(tasks.items()):
            found = find_matches(benchmark_tasks, pool, threshold=threshold, embedder=embedder)
            similarity = [m["similarity"] for m in found if m["kind"] == "embedding"]
            rows.append(
                {
                    "agent": agent,
                    "model": model,
                    "seed": seed.removeprefix("seed"),
                    "benchmark": benchmark,
                    "n_train": len(training["train_ids"]),
                    "n_selection": len(training["selection_ids"]),
                    "n_evaluated": len(benchmark_tasks),
                    **{f"{kind}_matches": sum(m["kind"] == kind for m in found) for kind in COUNTS},
                    "max_similarity_matched": max(similarity) if similarity else np.nan,
                    "matched_tasks": json.dumps(sorted({f"{m['task_id']}~{m['pool_task_id']}" for m in found})),
                }
            )
    return pd.DataFrame(rows), threshold


def audit_table(frame: pd.DataFrame, threshold: float) -> Table:
    header = ["Agent", "Model", "Seed", "Benchmark", "Train", "Selection", "Evaluated", "Id", "Text", "Embedding"]
    rows = [
        [r["agent"], r["model"], str(r["seed"]), r["benchmark"]]
        + [str(int(r[k])) for k in ("n_train", "n_selection", "n_evaluated", "id_matches", "text_matches")]
        + [str(int(r["embedding_matches"]))]
        for r in frame.to_dict(orient="records")
    ]
    leaks = int(frame[[f"{k}_matches" for k in COUNTS]].to_numpy().sum()) if not frame.empty else 0
    protocol = [
        "Matches between the tasks each agent trained or was selected on and each benchmark's evaluated tasks: "
        f"the same MBPP id, the same normalized text, or MiniLM cosine similarity ≥ {threshold}.",
        "All must be zero." if leaks == 0 else f"LEAKAGE: {leaks} matches; see leakage_audit.csv (matched_tasks).",
    ]
    if frame.empty:
        protocol.insert(0, "No trained agent in this results tree.")
    return Table(LEAKAGE_AUDIT, "Leakage audit: training side vs evaluated tasks", header, rows, protocol=protocol)


def write_leakage_audit(results: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None) -> Path:
    """``tables/leakage_audit.{md,tex,html,csv}``; returns the Markdown file."""
    root = Path(results)
    frame, threshold = audit_frame(root, data_dir)
    table = audit_table(frame, threshold)
    out = root / "tables"
    atomic_write_text(out / f"{LEAKAGE_AUDIT}.md", table.markdown())
    atomic_write_text(out / f"{LEAKAGE_AUDIT}.tex", table.latex())
    atomic_write_text(out / f"{LEAKAGE_AUDIT}.html", table.html())
    write_csv(out / f"{LEAKAGE_AUDIT}.csv", frame)
    inputs = [root / "aggregate" / "per_task.csv", *(path for path, _ in _agents(root))]
    write_stage_provenance(
        out, "leakage_audit", inputs, {"threshold": threshold}, name=f"{LEAKAGE_AUDIT}.provenance.json"
    )
    return out / f"{LEAKAGE_AUDIT}.md"
