"""Cost stage: the bill before the run (``analysis.cost``), printed, and written as JSON with ``out``.

Its default files are the project checkout's, where Snakemake runs: relative paths are read from the
current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError

DEFAULT_CONFIG = "config/config.yaml"
DEFAULT_TABLE = "config/cost_table.yaml"
#: the Snakefile's config schema, which also fills in the optional keys' defaults
SCHEMA = "workflow/schemas/config.schema.yaml"


def _project_file(path: str | os.PathLike[str], what: str) -> Path:
    if not Path(path).is_file():
        raise UserError(f"{path}: no such {what} (run promis-repro cost in the project checkout, where Snakemake runs)")
    return Path(path)


def cost(
    configfile: list[str] | None = None,
    table: str | os.PathLike[str] = DEFAULT_TABLE,
    results: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Print the bill of a config's grid (``configfile``: one or more, merged as Snakemake merges them);
    ``results``: the tree whose recorded costs and finished jobs count (default: the config's); ``out``: JSON."""
    from promis_repro.analysis.cost import estimate, load_config
    from promis_repro.analysis.cost_render import render
    from promis_repro.analysis.cost_table import load_table
    from promis_repro.io import atomic_write_json

    configfiles = [_project_file(path, "config file") for path in configfile or [DEFAULT_CONFIG]]
    config = load_config(configfiles, _project_file(SCHEMA, "config schema"))
    bill = estimate(config, load_table(_project_file(table, "cost table")), results)
    bill = {"config": [str(p) for p in configfiles], "table": str(table), **bill}
    print(render(bill), end="")
    if out is not None:
        atomic_write_json(Path(out), bill)
        print(f"-> {out}")
    return bill
