"""What the pipeline's rules call beyond ``run``/``train``: model fetching, scoring one cell, aggregation.

A *cell* is ``results/{model}/{benchmark}/{strategy}/seed{seed}/``: ``samples.jsonl``,
``trajectories.jsonl`` and ``cost.json`` from ``promis-repro run``; ``results.jsonl`` and
``metrics.json`` from ``evaluate_cell``. ``aggregate`` reads every cell's ``metrics.json``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json, atomic_write_jsonl, atomic_write_text


def fetch_model(name: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Make a model's weights available locally (convert the packaged GGUF, or download from the hub)."""
    from promis_repro.generation.registry import get_model

    spec = get_model(name)
    if spec.source == "gguf-package":
        from promis_repro.generation.weights import convert_gguf

        location = str(convert_gguf(spec))
    elif spec.source == "hub":
        try:
            from huggingface_hub import snapshot_download

            location = snapshot_download(spec.hub_id, revision=spec.revision)
        except Exception as exc:
            raise UserError(f"model {name}: could not download {spec.hub_id}@{spec.revision}: {exc}") from None
    else:
        from promis_repro.embedding import embedder_source

        location = embedder_source(name)
    record = {"model": name, "identity": spec.identity(), "location": location}
    atomic_write_json(out, record)
    return record


def evaluate_cell(
    cell: str | os.PathLike[str], benchmark: str, data_dir: str | os.PathLike[str] | None, workers: int = 2
) -> dict[str, Any]:
    from promis_repro.data.sources import sha256_of
    from promis_repro.evaluation.evaluator import evaluate_samples
    from promis_repro.metrics import summarize
    from promis_repro.provenance import provenance
    from promis_repro.sandbox.runner import detect_isolation

    cell = Path(cell)
    cost_path = cell / "cost.json"
    if not cost_path.exists():
        raise UserError(f"{cell}: no cost.json; run the strategy first")
    cost = json.loads(cost_path.read_text())
    rows, tasks = evaluate_samples(
        benchmark, cell / "samples.jsonl", data_dir=data_dir, workers=workers, progress=False
    )
    run_config = cost["provenance"].get("config", {})
    metrics: dict[str, Any] = {
        "model": run_config.get("model"),
        "benchmark": benchmark,
        "strategy": cost["strategy"],
        "seed": cost["provenance"].get("seed"),
        "feedback": cost["feedback"],
        "leaky": cost["leaky"],
        **summarize(rows),
        "cost": cost["mean_per_task"],
        "budget": cost["budget"],
        "reward": cost["reward"]["formula"],
        "sandbox": detect_isolation().describe(),
    }
    metrics["provenance"] = provenance(
        config={"command": "evaluate-cell", "cell": str(cell), "run": cost["provenance"].get("config_hash")},
        data_hashes={benchmark: tasks[0].source_hash if tasks else None, "samples": sha256_of(cell / "samples.jsonl")},
        model=cost["provenance"].get("model"),
        seed=cost["provenance"].get("seed"),
    )
    atomic_write_jsonl(cell / "results.jsonl", rows)
    atomic_write_json(cell / "metrics.json", metrics)
    return metrics


AGGREGATE_COLUMNS = (
    "model",
    "benchmark",
    "strategy",
    "feedback",
    "leaky",
    "seed",
    "n_tasks",
    "pass_at_1",
    "soft_pass_at_1",
    "pass_at_1_base",
    "soft_pass_at_1_base",
)


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def aggregate(metrics_files: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per-seed rows and per-cell mean ± std over seeds (``per_seed.csv``, ``cells.csv``, ``cells.json``)."""
    per_seed = []
    for path in metrics_files:
        try:
            metrics = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: unreadable metrics ({exc})") from None
        row = {key: metrics.get(key) for key in AGGREGATE_COLUMNS}
        for key in ("generator_calls", "rewriter_calls", "tokens", "model_seconds"):
            row[key] = metrics.get("cost", {}).get(key)
        per_seed.append(row)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in per_seed:
        groups[(row["model"], row["benchmark"], row["strategy"], row["feedback"])].append(row)
    cells = []
    for (model, benchmark, strategy, feedback), rows in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        cell: dict[str, Any] = {
            "model": model,
            "benchmark": benchmark,
            "strategy": strategy,
            "feedback": feedback,
            "leaky": rows[0]["leaky"],
            "seeds": len(rows),
        }
        for key in ("pass_at_1", "soft_pass_at_1", "generator_calls", "tokens"):
            values = np.array([r[key] for r in rows if r[key] is not None], dtype=float)
            cell[f"{key}_mean"] = float(values.mean()) if len(values) else None
            cell[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        cells.append(cell)
    out = Path(out)
    atomic_write_text(out / "per_seed.csv", _csv(per_seed))
    atomic_write_text(out / "cells.csv", _csv(cells))
    atomic_write_json(out / "cells.json", cells)
    return cells
