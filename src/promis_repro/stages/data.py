"""Data stage: the decontaminated training and selection pools, and reference solutions as samples."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_jsonl


def split(
    data_dir: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    benchmarks: list[str] | None = None,
    threshold: float = 0.9,
    embedder: str = "all-minilm-l6-v2",
) -> dict[str, Any]:
    """``train_pool.jsonl``, ``selection_pool.jsonl`` and ``decontamination.json`` in ``out``.

    The pools are decontaminated against the paper's benchmarks and any of ``benchmarks`` beside them.
    """
    from promis_repro.data.split import build_pools

    report = build_pools(data_dir, Path(out), benchmarks=benchmarks or (), threshold=threshold, embedder=embedder)
    counts = report["counts"]
    print(
        f"train pool {counts['train_pool']} tasks, selection pool {counts['selection_pool']} "
        f"tasks ({counts['removed']} removed) -> {out}"
    )
    return report


def references(benchmark: str, data_dir: str | os.PathLike[str] | None, out: str | os.PathLike[str]) -> int:
    """A benchmark's reference solutions as a samples file (what ``evaluate`` must score 100 %)."""
    from promis_repro.data.registry import load_benchmark

    tasks = [t for t in load_benchmark(benchmark, data_dir) if t.reference_solution is not None]
    if not tasks:
        raise UserError(f"benchmark {benchmark} ships no reference solutions")
    atomic_write_jsonl(out, ({"task_id": t.task_id, "solution": t.reference_solution} for t in tasks))
    print(f"{len(tasks)} reference solutions of {benchmark} -> {out}")
    return len(tasks)
