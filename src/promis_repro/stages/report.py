"""Report stages, each from the aggregate files: paired tests (``stats/``), the paper's tables
(``tables/``), the figures (``figures/``) and the provenance appendix (``report/``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from promis_repro.grid import REFERENCE_STRATEGY

if TYPE_CHECKING:
    import pandas as pd


def stats(results: str | os.PathLike[str], reference: str = REFERENCE_STRATEGY, resamples: int = 9999) -> pd.DataFrame:
    """``stats/comparisons.csv`` and ``.json``: every strategy against ``reference``, paired by task."""
    from promis_repro.analysis.significance import run_stats

    frame = run_stats(results, reference=reference, n_resamples=resamples)
    significant = int(frame["significant_pass"].sum()) if not frame.empty else 0
    print(f"{len(frame)} comparisons with {reference}, {significant} significant on Pass@1 after Holm")
    return frame


def tables(
    results: str | os.PathLike[str],
    paper: str | os.PathLike[str] | None = None,
    compare_with: str | os.PathLike[str] | None = None,
) -> list[str]:
    """``tables/{name}.{md,tex,csv,html}`` for every table of the grid (``grid.table_names``)."""
    from promis_repro.analysis.tables import make_tables

    names = make_tables(results, paper=paper, compare_with=compare_with)
    print(f"{len(names)} tables -> {Path(results) / 'tables'}: {', '.join(names)}")
    return names


def figures(results: str | os.PathLike[str]) -> list[Path]:
    """``figures/{name}.png`` and ``.pdf`` for every figure (``grid.FIGURES``)."""
    from promis_repro.analysis.figures import make_figures

    written = make_figures(results)
    print(f"{len(written)} figure files -> {Path(results) / 'figures'}")
    return written


def provenance(results: str | os.PathLike[str]) -> Path:
    """``report/provenance.html`` and ``.json``: the report's appendix."""
    from promis_repro.analysis.provenance_report import write_provenance_report

    path = write_provenance_report(results)
    print(f"provenance appendix -> {path}")
    return path


def audit(results: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``tables/leakage_audit.*``: each trained agent's tasks against each benchmark's evaluated tasks."""
    from promis_repro.analysis.leakage_audit import write_leakage_audit

    path = write_leakage_audit(results, data_dir)
    print(f"leakage audit -> {path}")
    return path
