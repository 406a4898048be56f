"""What the pipeline's rules call beyond ``run``/``train``: model fetching and scoring one cell.

A *cell* is ``results/{model}/{benchmark}/{strategy}/seed{seed}/``: ``samples.jsonl``,
``trajectories.jsonl`` and ``cost.json`` from ``promis-repro run``; ``results.jsonl`` and
``metrics.json`` from ``evaluate_cell`` (``promis_repro.analysis`` reads them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json, atomic_write_jsonl


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
    difficulty = {task.task_id: task.difficulty for task in tasks}
    rows = [{**row, "difficulty": difficulty.get(row["task_id"])} for row in rows]  # APPS tables by difficulty
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
