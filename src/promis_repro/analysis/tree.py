"""Reading a results tree: the cells' ``metrics.json`` and ``results.jsonl`` files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json
from promis_repro.provenance import provenance

#: top-level directories of a results tree that are not models
NOT_MODELS = {"agents", "aggregate", "stats", "tables", "figures", "report", "data", "logs", "models", "config"}

#: the figures stage's outputs, ``figures/{name}.png`` and ``.pdf``
FIGURES = ("bars", "ppo_learning", "actions_by_step", "cost_vs_pass", "apps_difficulty", "softpass_distribution")


def table_names(benchmarks: Iterable[str], feedback_modes: Iterable[str]) -> list[str]:
    """The tables stage's outputs for a grid, ``tables/{name}.{md,tex,csv,html}`` (named before they exist)."""
    feedback_modes = sorted(set(feedback_modes))
    names = [f"{benchmark}_{feedback}" for benchmark in benchmarks for feedback in feedback_modes]
    if "apps" in benchmarks:
        names += [f"apps_difficulty_{feedback}" for feedback in feedback_modes]
    return [*names, "paper_vs_reproduced"]


#: the strategies in the order the paper's tables list them, then our additions
STRATEGY_ORDER = (
    "direct",
    "ga_only",
    "rewrite_only",
    "random_hybrid",
    "epic",
    "reflexion",
    "ppo",
    "lpo",
    "self_correct",
    "rl_rewriter",
)


#: the paper's generators in its order; other models follow alphabetically
MODEL_ORDER = ("codet5p-770m-py", "codellama-7b-instruct", "deepseek-coder-6.7b-instruct")


def model_rank(name: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), name)


def strategy_rank(name: str) -> tuple[int, str]:
    """Sort key: the paper's order; oracle variants after their visible twin; unknown names last."""
    base = name.removesuffix("-oracle")
    index = STRATEGY_ORDER.index(base) if base in STRATEGY_ORDER else len(STRATEGY_ORDER)
    return (2 * index + (base != name), name)


def find_metrics(results: str | os.PathLike[str]) -> list[Path]:
    """Every ``{model}/{benchmark}/{strategy}/seed{n}/metrics.json`` under ``results``."""
    root = Path(results)
    return sorted(p for p in root.glob("*/*/*/seed*/metrics.json") if p.relative_to(root).parts[0] not in NOT_MODELS)


def read_json(path: str | os.PathLike[str]) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable JSON ({exc})") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: corrupt JSON line ({exc.msg})") from None
    return rows


def require_files(paths: Iterable[Path], producer: str) -> None:
    """One line naming the first missing input and the command that writes it."""
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: missing; run {producer} first")


def write_stage_provenance(
    out: str | os.PathLike[str], stage: str, inputs: Iterable[str | os.PathLike[str]], settings: dict[str, Any]
) -> None:
    """``provenance.json`` beside a stage's CSV/Markdown/figure outputs, which cannot carry it inline."""
    from promis_repro.data.sources import sha256_of

    hashes = {str(path): sha256_of(Path(path)) for path in inputs if Path(path).is_file()}
    atomic_write_json(
        Path(out) / "provenance.json", provenance(config={"stage": stage, **settings}, data_hashes=hashes)
    )
