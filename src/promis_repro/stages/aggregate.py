"""Aggregate stage: per seed, per task and per cell views of a results tree (``aggregate/``)."""

from __future__ import annotations

import os
from pathlib import Path

from promis_repro.errors import UserError


def aggregate(
    results: str | os.PathLike[str],
    metrics: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """``per_seed.csv``, ``per_task.csv``, ``cells.csv`` and ``cells.json`` of the given (else every) cell."""
    from promis_repro.analysis.aggregate import aggregate as aggregate_cells
    from promis_repro.analysis.provenance_report import require_one_revision_per_model
    from promis_repro.analysis.tree import find_metrics
    from promis_repro.grid import CELL_TEMPLATE

    files = [Path(f) for f in metrics] if metrics else find_metrics(results)
    if not files:
        raise UserError(f"no {CELL_TEMPLATE}/metrics.json under {results}")
    require_one_revision_per_model(files)
    target = Path(out or Path(results) / "aggregate")
    cells = aggregate_cells(files, target)
    print(f"{len(files)} metrics files, {len(cells)} cells -> {target}")
    return files
