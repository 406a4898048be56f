"""Reading a results tree: where the cells' ``metrics.json`` files are, and each stage's provenance file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.grid import NOT_MODELS, cell_glob
from promis_repro.io import atomic_write_json, sha256_of
from promis_repro.provenance import provenance


def find_metrics(results: str | os.PathLike[str]) -> list[Path]:
    """Every cell's ``metrics.json`` under ``results`` (``grid.CELL_TEMPLATE``)."""
    root = Path(results)
    return sorted(p for p in root.glob(f"{cell_glob()}/metrics.json") if p.relative_to(root).parts[0] not in NOT_MODELS)


def require_files(paths: Iterable[Path], producer: str) -> None:
    """One line naming the first missing input and the command that writes it."""
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: missing; run {producer} first")


def write_stage_provenance(
    out: str | os.PathLike[str],
    stage: str,
    inputs: Iterable[str | os.PathLike[str]],
    settings: dict[str, Any],
    name: str = "provenance.json",
) -> None:
    """``provenance.json`` beside a stage's CSV/Markdown/figure outputs, which cannot carry it inline."""
    hashes = {str(path): sha256_of(Path(path)) for path in inputs if Path(path).is_file()}
    atomic_write_json(Path(out) / name, provenance(config={"stage": stage, **settings}, data_hashes=hashes))
