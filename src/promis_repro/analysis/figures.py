"""The paper's figures from a results tree (seaborn; PNG and PDF; no display needed).

- ``bars``: Pass@1 per strategy and generator with 95% CIs over seeds, one panel per benchmark;
- ``ppo_learning``: PPO training curves per seed (moving mean reward, pass rate, action frequencies);
- ``actions_by_step``: which action the trained agent picks at each step at test time;
- ``cost_vs_pass``: model calls per task against Pass@1, per cell;
- ``apps_difficulty``: APPS Pass@1 by difficulty;
- ``softpass_distribution``: the per-task SoftPass distribution of every strategy.

A figure without data (no APPS run, no PPO agent) is still written, saying so, so that the
pipeline's outputs do not depend on the grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures render on nodes without a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from promis_repro.analysis.aggregate import apps_pass_by_difficulty
from promis_repro.analysis.tree import require_files, write_stage_provenance
from promis_repro.data.apps import DIFFICULTIES
from promis_repro.grid import (
    ACTION_NAMES,
    AGENT_TEMPLATE,
    BENCHMARK_LABELS,
    FIGURES,
    cell_dir,
    strategy_rank,
    variant_of,
)
from promis_repro.io import read_jsonl

PPO = "ppo"  # the agent whose learning curves and test-time actions two figures draw


def _order(frame: pd.DataFrame) -> list[str]:
    return sorted(set(frame["strategy"]), key=strategy_rank)


def _columns(frame: pd.DataFrame) -> list[str]:
    """Benchmark panels in the paper's order (MBPP+, HumanEval+, APPS), after ``_label``."""
    names = list(BENCHMARK_LABELS.values())
    return sorted(set(frame["benchmark"]), key=lambda b: names.index(b) if b in names else len(names))


#: bars with 95% bootstrap confidence intervals, the same resamples in every run
BARS_WITH_CIS = {"kind": "bar", "errorbar": ("ci", 95), "seed": 0}


def _by_benchmark(frame: pd.DataFrame) -> dict[str, Any]:
    """One panel per benchmark, in the paper's order."""
    return {"col": "benchmark", "col_order": _columns(frame)}


def _finish(grid: sns.FacetGrid, x_label: str, y_label: str, rotate: bool = False) -> plt.Figure:
    # the values alone: seaborn's "model = ... | benchmark = ..." overruns a panel's width
    names = [name for name, values in (("{row_name}", grid.row_names), ("{col_name}", grid.col_names)) if values]
    if names:
        grid.set_titles(" · ".join(names))
    grid.set_axis_labels(x_label, y_label)
    if rotate:  # strategy names are long
        grid.tick_params(axis="x", rotation=60)
    return grid.figure


def _strategies_by_benchmark(
    frame: pd.DataFrame, x: str, y: str, labels: tuple[str, str], **options: Any
) -> plt.Figure:
    """One panel per benchmark, strategies by colour and generators by marker style."""
    grid = sns.relplot(
        data=frame, x=x, y=y, hue="strategy", style="model", hue_order=_order(frame), height=3.2, **options,
        **_by_benchmark(frame),
    )  # fmt: skip
    return _finish(grid, *labels)


def _empty(message: str) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 2))
    axis.axis("off")
    axis.text(0.5, 0.5, message, ha="center", va="center")
    return figure


def _label(frame: pd.DataFrame) -> pd.DataFrame:
    """Strategy labels that carry the feedback mode when a results tree has more than one."""
    frame = frame.copy()
    if frame["feedback"].nunique() > 1:
        frame["strategy"] = frame["strategy"] + " [" + frame["feedback"] + "]"
    frame["benchmark"] = frame["benchmark"].map(lambda b: BENCHMARK_LABELS.get(b, b))
    return frame


def bars(per_seed: pd.DataFrame) -> plt.Figure:
    frame = _label(per_seed).rename(columns={"pass_at_1": "Pass@1", "soft_pass_at_1": "SoftPass@1"})
    long = frame.melt(["model", "benchmark", "strategy", "seed"], ["Pass@1", "SoftPass@1"], "metric", "score")
    grid = sns.catplot(
        data=long,
        x="strategy",
        y="score",
        hue="model",
        row="metric",
        order=_order(frame),
        height=3.2,
        aspect=1.3,
        **BARS_WITH_CIS,
        **_by_benchmark(frame),
    )
    return _finish(grid, "", "mean over seeds", rotate=True)


def ppo_learning(root: Path) -> plt.Figure:
    curves = []
    for path in sorted(root.glob(AGENT_TEMPLATE.format(agent=PPO, model="*", seed="*") + "/curves.csv")):
        frame = pd.read_csv(path)
        if frame.empty:
            continue
        frame["model"], frame["seed"] = path.parts[-3], path.parts[-2]
        curves.append(frame)
    if not curves:
        return _empty("no PPO training curves in this results tree")
    frame = pd.concat(curves, ignore_index=True)
    actions = [c for c in frame.columns if c.startswith("action_")]
    share = frame[actions].div(frame[actions].sum(axis=1).where(lambda s: s > 0), axis=0)
    frame = frame.join(share.add_suffix("_share"))
    series = ["mean_return_20", "pass_rate_20", *(f"{a}_share" for a in actions)]
    long = frame.melt(["episode", "model", "seed"], series, "series", "value")
    grid = sns.relplot(
        data=long,
        kind="line",
        x="episode",
        y="value",
        hue="seed",
        style="model",
        col="series",
        col_wrap=3,
        height=2.6,
        facet_kws={"sharey": False},
    )
    return grid.figure


def actions_by_step(root: Path, cells: pd.DataFrame) -> plt.Figure:
    rows = []
    for cell in cells[cells["strategy"] == PPO].to_dict(orient="records"):
        for seed in str(cell["seed_list"]).split():
            variant = variant_of(cell["feedback"])
            path = cell_dir(root, cell["model"], cell["benchmark"], PPO, seed, variant) / "trajectories.jsonl"
            if not path.exists():
                continue
            for _, step in read_jsonl(path):
                if "step" in step and "action" in step:
                    rows.append(
                        {
                            "benchmark": BENCHMARK_LABELS.get(cell["benchmark"], cell["benchmark"]),
                            "model": cell["model"],
                            "step": int(step["step"]),
                            "action": ACTION_NAMES.get(step["action"], str(step["action"])),
                        }
                    )
    if not rows:
        return _empty("no test-time PPO trajectories in this results tree")
    frame = pd.DataFrame(rows)
    grid = sns.displot(
        data=frame,
        x="step",
        hue="action",
        col="benchmark",
        row="model",
        multiple="fill",
        discrete=True,
        stat="proportion",
        height=2.6,
        aspect=1.2,
    )
    return _finish(grid, "step", "share of actions")


def cost_vs_pass(cells: pd.DataFrame) -> plt.Figure:
    frame = _label(cells)
    frame["model calls per task"] = frame["generator_calls_mean"].fillna(0) + frame["rewriter_calls_mean"].fillna(0)
    return _strategies_by_benchmark(
        frame,
        "model calls per task",
        "pass_at_1_mean",
        ("model calls per task (mean)", "Pass@1 (mean over seeds)"),
        s=60,
    )


def apps_difficulty(per_task: pd.DataFrame) -> plt.Figure:
    by_seed = apps_pass_by_difficulty(per_task)
    if by_seed.empty:
        return _empty("no APPS results with difficulty in this results tree")
    frame = _label(by_seed.assign(benchmark="apps"))
    grid = sns.catplot(
        data=frame,
        x="difficulty",
        y="pass_at_1",
        hue="strategy",
        col="model",
        order=[d for d in DIFFICULTIES if d in set(frame["difficulty"])],
        hue_order=_order(frame),
        height=3.2,
        **BARS_WITH_CIS,
    )
    return _finish(grid, "", "Pass@1")


LEVEL_COLUMNS = {
    "syntax": "syntax",
    "execution": "execution",
    "soft_pass_at_1": "tests",
    "quality": "quality",
    "efficiency": "efficiency",
}


def levels(per_seed: pd.DataFrame) -> plt.Figure:
    """The five levels (evaluation/levels.py) per strategy, one panel per benchmark; means over seeds and models."""
    present = [c for c in LEVEL_COLUMNS if c in per_seed]
    if "quality" not in per_seed or per_seed["quality"].isna().all():
        return _empty("no cell recorded its levels (metrics.json without levels)")
    frame = _label(per_seed).rename(columns=LEVEL_COLUMNS)
    long = frame.melt(["model", "benchmark", "strategy", "seed"], [LEVEL_COLUMNS[c] for c in present], "level", "value")
    grid = sns.catplot(
        data=long.dropna(subset=["value"]),
        x="strategy",
        y="value",
        hue="level",
        hue_order=[LEVEL_COLUMNS[c] for c in present],
        order=_order(frame),
        height=3.5,
        aspect=1.6,
        **BARS_WITH_CIS,
        **_by_benchmark(frame),
    )
    return _finish(grid, "", "level (0-1), mean over seeds and models", rotate=True)


def softpass_distribution(per_task: pd.DataFrame) -> plt.Figure:
    frame = _label(
        per_task.groupby(["model", "benchmark", "strategy", "feedback", "task_id"])["soft_pass"].mean().reset_index()
    )
    grid = sns.catplot(
        data=frame,
        kind="box",
        x="strategy",
        y="soft_pass",
        hue="model",
        order=_order(frame),
        height=3.5,
        aspect=1.3,
        **_by_benchmark(frame),
    )
    return _finish(grid, "", "SoftPass per task (mean over seeds)", rotate=True)


def budget_curve(curve: pd.DataFrame) -> plt.Figure:
    """Pass@1 of the best-so-far candidate after k generator calls, one panel per benchmark (95% CIs over seeds)."""
    if curve.empty:
        return _empty("no budget curves in this results tree (cells evaluated before candidates were scored)")
    frame = _label(curve)
    labels = ("generator calls k", "Pass@1 (best-so-far by visible feedback)")
    options = {"kind": "line", "errorbar": ("ci", 95), "seed": 0, "marker": "o"}
    figure = _strategies_by_benchmark(frame, "k", "pass_at_1", labels, **options)
    calls = sorted({int(k) for k in frame["k"]})
    for axis in figure.axes:  # calls are whole numbers
        axis.set_xticks(calls if len(calls) <= 12 else axis.get_xticks())
    return figure


def make_figures(results: str | os.PathLike[str]) -> list[Path]:
    """Write every figure of ``results`` to ``results/figures/{name}.png`` and ``.pdf``."""
    root = Path(results)
    sources = {name: root / "aggregate" / f"{name}.csv" for name in ("cells", "per_seed", "per_task", "budget_curve")}
    require_files(sources.values(), f"`promis-repro aggregate --results {root}`")
    cells = pd.read_csv(sources["cells"])
    per_seed = pd.read_csv(sources["per_seed"])
    per_task = pd.read_csv(sources["per_task"], dtype={"task_id": str})
    curve = pd.read_csv(sources["budget_curve"])
    sns.set_theme(style="whitegrid", context="paper")
    makers = {
        "bars": lambda: bars(per_seed),
        "ppo_learning": lambda: ppo_learning(root),
        "actions_by_step": lambda: actions_by_step(root, cells),
        "cost_vs_pass": lambda: cost_vs_pass(cells),
        "apps_difficulty": lambda: apps_difficulty(per_task),
        "softpass_distribution": lambda: softpass_distribution(per_task),
        "levels": lambda: levels(per_seed),
        "budget_curve": lambda: budget_curve(curve),
    }
    out = root / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FIGURES:
        figure = makers[name]()
        for suffix in ("png", "pdf"):
            target = out / f"{name}.{suffix}"
            # a temporary name and a rename, so a killed job never leaves half an image behind
            partial = out / f".{name}.partial.{suffix}"
            figure.savefig(partial, dpi=150, bbox_inches="tight", metadata=None)
            partial.replace(target)
            written.append(target)
        plt.close(figure)
    write_stage_provenance(out, "figures", sources.values(), {"figures": list(FIGURES)})
    return written
