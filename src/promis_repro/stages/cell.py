"""Cell stage: one cell's row of the tables, from that cell's seeds (and the reference's) alone (``cells/``).

A reviewer's cell (model x benchmark x strategy, every seed): ``cells/{model}/{benchmark}/{strategy}{variant}``
``.csv`` (the numbers), ``.md`` (the row as a table, with its protocol block) and ``.provenance.json``. The
numbers are the full tables' (``analysis.tables.cell_row``): the cell's metrics are aggregated as
``aggregate`` does, compared with ``ppo``'s seeds as ``stats`` does, and set beside the paper as
``paper_vs_reproduced`` does; only the Holm correction, which needs the whole table, is left as a bound.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from promis_repro.errors import UserError
from promis_repro.grid import CELL_ROW_TEMPLATE, LEAKY_FEEDBACK, ORACLE_VARIANT, REFERENCE_STRATEGY, cell_dir


def row_path(results: str | os.PathLike[str], model: str, benchmark: str, strategy: str, variant: str = "") -> Path:
    """A cell's row files without their suffix."""
    return Path(results) / CELL_ROW_TEMPLATE.format(
        model=model, benchmark=benchmark, strategy=strategy, variant=variant
    )


def row_inputs(
    results: str | os.PathLike[str],
    model: str,
    benchmark: str,
    strategy: str,
    variant: str,
    seeds: list[str] | list[int],
    strategies: list[str] | None = None,
    variants: list[str] | None = None,
    reference: str = REFERENCE_STRATEGY,
) -> list[str]:
    """The ``metrics.json`` files a cell's row reads (``rules/cell.smk``'s inputs): the cell's seeds and, for the
    paired test, the reference's same seeds, when the grid (``strategies``; None: any) has the reference.
    ``variants``: the grid's feedback variants; a cell outside them is refused."""
    if variants is not None and variant not in variants:
        raise UserError(f"{strategy}{variant} is not a cell of this grid (oracle_variant: true adds the oracle twins)")
    compared = strategies is None or reference in strategies
    names = [strategy] + ([reference] if compared and reference != strategy else [])
    return [
        str(cell_dir(results, model, benchmark, name, seed, variant) / "metrics.json")
        for name in names
        for seed in seeds
    ]


def _seeds_on_disk(
    results: str | os.PathLike[str], model: str, benchmark: str, strategy: str, variant: str
) -> list[str]:
    parent = cell_dir(results, model, benchmark, strategy, 0, variant).parent
    return sorted((p.name.removeprefix("seed") for p in parent.glob("seed*/metrics.json")), key=int)


def cell(
    results: str | os.PathLike[str],
    model: str,
    benchmark: str,
    strategy: str,
    seeds: list[str] | None = None,
    oracle: bool = False,
    paper: str | os.PathLike[str] | None = None,
    strategies: list[str] | None = None,
    models: list[str] | None = None,
    reference: str = REFERENCE_STRATEGY,
    resamples: int = 9999,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write one cell's row; returns the ``.csv``.

    ``seeds``: the grid's (default: every seed of the cell on disk); the reference's same seeds are
    compared with it. ``strategies`` and ``models``: the grid's, for the comparison's bootstrap seed (as
    ``stats`` draws it) and the size of Holm's family; without ``strategies`` the reference is required,
    with them only when it is in the grid, as in the full table. ``out``: the files' path without suffix.
    """
    import pandas as pd

    from promis_repro.analysis.aggregate import aggregate, records, write_csv
    from promis_repro.analysis.paper import load_paper_results
    from promis_repro.analysis.provenance_report import require_one_revision_per_model
    from promis_repro.analysis.tables import cell_row, cell_table
    from promis_repro.analysis.tree import write_stage_provenance
    from promis_repro.io import atomic_write_text

    variant = ORACLE_VARIANT if oracle else ""
    seeds = [str(s) for s in seeds] if seeds else _seeds_on_disk(results, model, benchmark, strategy, variant)
    if not seeds:
        raise UserError(f"{cell_dir(results, model, benchmark, strategy, '*', variant)}: no evaluated seed")
    files = [
        Path(f) for f in row_inputs(results, model, benchmark, strategy, variant, seeds, strategies, None, reference)
    ]
    for path in files:
        if not path.exists():
            raise UserError(f"{path}: missing; run the cell first (snakemake {path})")
    require_one_revision_per_model(files)  # as the aggregate stage: seeds of two revisions are not one cell
    with tempfile.TemporaryDirectory(prefix="promis-cell-") as scratch:
        aggregate(files, scratch)  # as the aggregate stage writes them, read back as the tables read them
        cells = pd.read_csv(Path(scratch) / "cells.csv", keep_default_na=True)
        per_task = pd.read_csv(Path(scratch) / "per_task.csv", dtype={"task_id": str})
    feedback = str(cells.loc[cells["strategy"] == strategy, "feedback"].iloc[0])
    if (feedback == LEAKY_FEEDBACK) != oracle:
        raise UserError(
            f"{files[0]}: feedback {feedback}, but the cell asked for is{'' if oracle else ' not'} the oracle twin"
        )
    grid_strategies = list(strategies or dict.fromkeys([strategy, reference]))
    family = len(models or [model]) * len(set(grid_strategies) - {reference}) if reference in grid_strategies else None
    row = cell_row(
        cells,
        per_task,
        {"model": model, "benchmark": benchmark, "strategy": strategy, "feedback": feedback},
        paper=load_paper_results(paper) if paper is not None else None,
        strategies=grid_strategies,
        family=family,
        reference=reference,
        n_resamples=resamples,
    )
    stem = Path(out) if out is not None else row_path(results, model, benchmark, strategy, variant)
    frame = pd.DataFrame([row])
    write_csv(stem.with_name(stem.name + ".csv"), frame)
    atomic_write_text(stem.with_name(stem.name + ".md"), cell_table(row, cells).markdown())
    inputs = [*files, *([Path(paper)] if paper is not None else [])]
    settings = {"cell": records(frame)[0], "reference": reference, "n_resamples": resamples}
    write_stage_provenance(stem.parent, "cell", inputs, settings, name=f"{stem.name}.provenance.json")
    p_pass = row.get("p_pass")
    versus = f", p vs {reference} {p_pass:.3g} (before Holm)" if p_pass is not None else ""
    print(
        f"{model} / {benchmark} / {strategy}{variant}: Pass@1 {100 * row['pass_at_1_mean']:.1f} ± "
        f"{100 * row['pass_at_1_std']:.1f} over seeds {row['seed_list']}{versus} -> {stem}.csv"
    )
    return stem.with_name(stem.name + ".csv")
