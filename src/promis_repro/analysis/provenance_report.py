"""The report's provenance appendix: what produced every number in a results tree.

Collected from every cell's ``metrics.json`` (and the trained agents' ``training.json``): package
versions, git commits, config hashes, data hashes, model identities (hub id and revision), seeds.
A value that differs between files (two torch versions, a dirty commit) is listed with its count,
which is how a mixed tree shows itself.
"""

from __future__ import annotations

import html
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from promis_repro.analysis.tree import find_metrics
from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json, atomic_write_text, read_json


def _roles(model: Any) -> list[dict[str, Any]]:
    """The model identities of one provenance record (one, or one per role: generator, rewriter)."""
    if not isinstance(model, dict):
        return []
    roles = model.values() if all(isinstance(v, dict) for v in model.values()) else [model]
    return [r for r in roles if isinstance(r, dict)]


def _models(model: Any) -> list[str]:
    return [
        f"{r.get('name')}: {r.get('hub_id')}@{r.get('revision')}"
        + (f" ({r.get('gguf_file')})" if r.get("gguf_file") else "")
        for r in _roles(model)
    ]


def require_one_revision_per_model(files: list[Path]) -> None:
    """Refuse a set of cells that used two revisions of one model (a branch moved, a lock changed).

    Such a tree compares weights, not strategies; the cells of the older revision must be rerun.
    """
    seen: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in files:
        for identity in _roles((read_json(path).get("provenance") or {}).get("model")):
            if identity.get("name"):
                seen[str(identity["name"])].setdefault(f"{identity.get('hub_id')}@{identity.get('revision')}", path)
    for name, revisions in sorted(seen.items()):
        if len(revisions) > 1:
            (first, a), (second, b) = list(revisions.items())[:2]
            raise UserError(
                f"the cells mix revisions of model {name}: {first} ({a}) and {second} ({b}); "
                "rerun the cells of the stale one (snakemake reruns them after `models lock`)"
            )


def collect(results: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    root = Path(results)
    files = find_metrics(root) + sorted((root / "agents").glob("*/*/seed*/training.json"))
    if not files:
        raise UserError(f"{root}: no metrics.json or training.json to take provenance from")
    seen: dict[str, Counter] = defaultdict(Counter)
    for path in files:
        record = read_json(path).get("provenance") or {}
        for package, version in (record.get("packages") or {}).items():
            seen[f"package {package}"][str(version)] += 1
        seen["git commit"][str(record.get("git_commit"))] += 1
        seen["config hash"][str(record.get("config_hash"))] += 1
        for name, digest in (record.get("data_hashes") or {}).items():
            if name != "samples":  # one per cell: the cells' own outputs, not inputs
                seen[f"data {name}"][str(digest)] += 1
        for line in _models(record.get("model")):
            seen["model"][line] += 1
        seen["seed"][str(record.get("seed"))] += 1
    seen["files"][f"{len(files)} provenance records"] += 1
    return {key: dict(counter) for key, counter in sorted(seen.items())}


def write_provenance_report(results: str | os.PathLike[str]) -> Path:
    """``results/report/provenance.{html,json}``."""
    collected = collect(results)
    rows = []
    for key, values in collected.items():
        text = "<br>".join(
            html.escape(value) + (f" <em>(x{count})</em>" if len(values) > 1 else "") for value, count in values.items()
        )
        rows.append(f"<tr><th>{html.escape(key)}</th><td>{text}</td></tr>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Provenance</title></head><body>"
        "<h2>Provenance appendix</h2><p>Every value recorded in the results tree's metrics and training "
        "records; several values for one key mean the tree mixes runs.</p>"
        f"<table border='1' cellpadding='4'>{''.join(rows)}</table></body></html>\n"
    )
    out = Path(results) / "report"
    atomic_write_json(out / "provenance.json", collected)
    atomic_write_text(out / "provenance.html", page)
    return out / "provenance.html"
