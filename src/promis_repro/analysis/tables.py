"""The paper's tables from a results tree, as Markdown, LaTeX (booktabs), CSV and HTML (the report's view).

- ``{benchmark}_{feedback}``: strategies x generators, Pass@1 and SoftPass@1 in percent as
  mean ± standard deviation over seeds; the best mean of each column in bold; † (Pass@1, McNemar) and
  ‡ (SoftPass@1, Wilcoxon) mark a difference from ``ppo`` significant after Holm correction over the
  table. A protocol block follows every table.
- ``apps_difficulty_{feedback}``: APPS Pass@1 by difficulty (written whenever APPS cells exist, so a
  pipeline can name it in advance; dashes where results.jsonl rows carry no difficulty).
- ``paper_vs_reproduced``: the paper's numbers beside ours (``analysis/paper.py``).

``cell_row`` is one cell's row of these (a reviewer's cell, ``promis-repro cell``): its mean ± SD, the
paper's number with the difference's CI, and the paired test against ``ppo``, each from the function the
full tables use (``aggregate``, ``paper_comparison``, ``compare_pair``), on that cell's files only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from promis_repro.analysis.aggregate import apps_pass_by_difficulty, write_csv
from promis_repro.analysis.paper import load_paper_results, paper_comparison, paper_table
from promis_repro.analysis.significance import ALPHA, POWER, REFERENCE, compare_pair
from promis_repro.analysis.table_format import PASS_MARK, SOFT_MARK, Table, percent
from promis_repro.analysis.tree import require_files, write_stage_provenance
from promis_repro.data.apps import DIFFICULTIES
from promis_repro.grid import BENCHMARK_LABELS, PROTOCOL_COMPARISON, STRATEGY_LABELS, model_rank, strategy_rank
from promis_repro.io import atomic_write_text


def _feedback_line(feedback: str, leaky: bool) -> str:
    if leaky:
        return f"Feedback: {feedback} — LEAKY: the hidden tests that score the result also reached the strategy."
    return f"Feedback: {feedback} — hidden tests only score the final solution, once."


PROTOCOL_LINES = {
    "ours": "Protocol: ours — agents trained on the decontaminated MBPP train split under test-time conditions "
    "(feedback from the visible test, reward from the held-out tests), selected on hidden tests of the selection "
    "pool; the observation's task feature says whether visible tests exist.",
    "paper": "Protocol: PAPER (labelled ablation) — the public code's: binary reward +1/-0.1, actions applied to "
    "the original prompt, shared 128-128 tanh actor-critic with 64-unit heads, Monte-Carlo returns with the step "
    "limit as a true end, the dataset-position feature, training feedback and reward from all of a task's tests.",
}


def protocol_of(cells: pd.DataFrame) -> str:
    protocols = sorted(set(cells["protocol"].dropna())) if "protocol" in cells else []
    return "+".join(protocols) or "ours"


def protocol_block(cells: pd.DataFrame, comparisons: pd.DataFrame) -> list[str]:
    """The protocol lines under a table: protocol, feedback, seeds, tasks, budgets, reward, data, tests, MDD."""
    from promis_repro.data.sources import DATA_FILES

    protocol = protocol_of(cells)
    lines = [PROTOCOL_LINES.get(protocol, f"Protocol: {protocol} (mixed: read each cell's metrics.json)")]
    lines.append(_feedback_line(str(cells["feedback"].iloc[0]), bool(cells["leaky"].any())))
    seeds = sorted({int(s) for text in cells["seed_list"] for s in str(text).split()})
    tasks = sorted({int(n) for n in cells["n_tasks"].dropna()})
    task_text = str(tasks[0]) if len(tasks) == 1 else f"{tasks[0]}–{tasks[-1]}" if tasks else "?"
    lines.append(f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)}); tasks per cell: {task_text}.")
    budgets = sorted({str(b) for b in cells["budget"].dropna()})
    lines.append(f"Budget per task: {'; '.join(budgets) or 'not recorded'}.")
    rewards = sorted({str(r) for r in cells["reward"].dropna()})
    lines.append(f"Reward: {'; '.join(rewards) or 'not recorded'}.")
    for benchmark in sorted(set(cells["benchmark"])):
        hashes = sorted({str(h)[:12] for h in cells.loc[cells["benchmark"] == benchmark, "data_hash"].dropna()})
        source = DATA_FILES[benchmark].description if benchmark in DATA_FILES else benchmark
        lines.append(f"Data: {source}; sha256 {', '.join(hashes) or 'not recorded'}.")
    lines.append(
        f"{PASS_MARK} Pass@1 and {SOFT_MARK} SoftPass@1: the number shown (mean over seeds of the per-seed mean over "
        f"tasks) differs from {REFERENCE}'s at p < {ALPHA} after Holm correction over this table, by a hierarchical "
        "bootstrap that resamples each side's seeds and then the paired tasks (stats/comparisons.csv; McNemar and "
        "Wilcoxon on per-task values are there too)."
    )
    lines.append(
        "Calls: mean generator calls used per task; every strategy may use the budget above, and tasks stop early "
        "on a pass of the visible tests or by the strategy's own rule (cost.json, stop). At equal calls (k = the "
        "generator budget, best-so-far candidate by visible feedback): stats/comparisons_at_budget.csv and the "
        "budget_curve figure."
    )
    if not comparisons.empty:
        tasks_mdd = comparisons["mdd_pass_tasks"].dropna()
        seeds_mdd = comparisons["mdd_pass_seeds"].dropna()
        parts = []
        if len(tasks_mdd):
            parts.append(f"over the tasks {_percentage_points(tasks_mdd.median())}")
        if len(seeds_mdd):
            parts.append(f"over the seeds {_percentage_points(seeds_mdd.median())}")
        lines.append(
            f"Minimum detectable Pass@1 difference vs {REFERENCE} (α = {ALPHA}, power {POWER}, observed spread, "
            f"median over comparisons): "
            + ("; ".join(parts) if parts else "undefined, the Pass@1 differences have no spread")
            + "."
        )
    return lines


def _percentage_points(difference: float) -> str:
    # a Pass@1 difference cannot exceed 100 pp: past that, nothing is detectable at this n
    return f"{100 * difference:.1f} pp" if difference <= 1 else "more than 100 pp (none is detectable)"


def _strategies(frame: pd.DataFrame) -> list[str]:
    return sorted(set(frame["strategy"]), key=strategy_rank)


#: per model: the paper's two metrics, the multi-level evaluation's quality and efficiency (means over
#: seeds of the per-cell means, 0..1; "–" where not measured) and the generator calls per task
PER_MODEL_COLUMNS = ("Pass@1", "SoftPass@1", "quality", "efficiency", "calls")


def benchmark_table(cells: pd.DataFrame, comparisons: pd.DataFrame, benchmark: str, feedback: str) -> Table:
    cells = cells[(cells["benchmark"] == benchmark) & (cells["feedback"] == feedback)]
    models = sorted(set(cells["model"]), key=model_rank)
    strategies = _strategies(cells)
    header = ["Strategy"] + [f"{m} {metric}" for m in models for metric in PER_MODEL_COLUMNS]
    stride = len(PER_MODEL_COLUMNS)
    rows, bold, marks = [], set(), {}
    by_cell = {(r["model"], r["strategy"]): r for r in cells.to_dict(orient="records")}
    significant = {}
    if not comparisons.empty:
        chosen = comparisons[(comparisons["benchmark"] == benchmark) & (comparisons["feedback"] == feedback)]
        for r in chosen.to_dict(orient="records"):
            significant[(r["model"], r["strategy"])] = (bool(r["significant_pass"]), bool(r["significant_soft"]))
    for i, strategy in enumerate(strategies):
        row = [STRATEGY_LABELS.get(strategy, strategy)]
        for j, model in enumerate(models):
            cell = by_cell.get((model, strategy))
            for k, metric in enumerate(("pass_at_1", "soft_pass_at_1")):
                column = 1 + stride * j + k
                row.append(percent(cell[f"{metric}_mean"], cell[f"{metric}_std"]) if cell else "–")
                if significant.get((model, strategy), (False, False))[k]:
                    marks[(i, column)] = (PASS_MARK, SOFT_MARK)[k]
            for key, digits in (("quality_mean", 2), ("efficiency_mean", 2), ("generator_calls_mean", 1)):
                value = cell.get(key) if cell else None
                row.append("–" if value is None or np.isnan(value) else f"{value:.{digits}f}")
        rows.append(row)
    for j, model in enumerate(models):
        for k, metric in enumerate(("pass_at_1", "soft_pass_at_1")):
            means = [by_cell[(model, s)][f"{metric}_mean"] if (model, s) in by_cell else np.nan for s in strategies]
            if np.all(np.isnan(means)):
                continue
            best = round(np.nanmax(means), 6)
            bold |= {(i, 1 + stride * j + k) for i, m in enumerate(means) if not np.isnan(m) and round(m, 6) == best}
    leaky = bool(cells["leaky"].any())
    title = f"{BENCHMARK_LABELS.get(benchmark, benchmark)}: Pass@1 and SoftPass@1 (%), mean ± std over seeds"
    title += f", feedback {feedback}" + (" (LEAKY)" if leaky else "")
    title += "; quality and efficiency levels (0-1), means"
    title += " — PAPER PROTOCOL" if protocol_of(cells) != "ours" else ""
    relevant = comparisons
    if not comparisons.empty:
        relevant = comparisons[(comparisons["benchmark"] == benchmark) & (comparisons["feedback"] == feedback)]
    return Table(f"{benchmark}_{feedback}", title, header, rows, bold, marks, protocol_block(cells, relevant))


def difficulty_table(
    by_difficulty: pd.DataFrame, per_task: pd.DataFrame, cells: pd.DataFrame, feedback: str
) -> Table | None:
    """``by_difficulty``: one feedback mode's rows of ``apps_pass_by_difficulty``; None without APPS cells."""
    apps_cells = cells[(cells["benchmark"] == "apps") & (cells["feedback"] == feedback)]
    if apps_cells.empty:
        return None
    summary = by_difficulty.groupby(["model", "strategy", "difficulty"])["pass_at_1"].agg(["mean", "std"])
    present = [d for d in DIFFICULTIES if d in set(by_difficulty["difficulty"])] or list(DIFFICULTIES)
    tasks = per_task[(per_task["benchmark"] == "apps") & (per_task["feedback"] == feedback)]
    counts = tasks.groupby("difficulty")["task_id"].nunique()
    header = ["Model", "Strategy"] + [f"{d} (n={counts.get(d, 0)})" for d in present]
    rows = []
    for model in sorted(set(apps_cells["model"]), key=model_rank):
        for strategy in _strategies(apps_cells[apps_cells["model"] == model]):
            row = [model, STRATEGY_LABELS.get(strategy, strategy)]
            for difficulty in present:
                key = (model, strategy, difficulty)
                row.append(percent(*summary.loc[key]) if key in summary.index else "–")
            rows.append(row)
    title = f"APPS Pass@1 (%) by difficulty, mean ± std over seeds, feedback {feedback}"
    title += " (LEAKY)" if bool(apps_cells["leaky"].any()) else ""
    title += " — PAPER PROTOCOL" if protocol_of(apps_cells) != "ours" else ""
    protocol = protocol_block(apps_cells, pd.DataFrame())
    if by_difficulty.empty:
        protocol.insert(0, "No results.jsonl row carries an APPS difficulty (rows written before it was recorded).")
    return Table(f"apps_difficulty_{feedback}", title, header, rows, protocol=protocol)


def _write(table: Table, numbers: pd.DataFrame, out: Path) -> list[str]:
    atomic_write_text(out / f"{table.name}.md", table.markdown())
    atomic_write_text(out / f"{table.name}.tex", table.latex())
    atomic_write_text(out / f"{table.name}.html", table.html())
    write_csv(out / f"{table.name}.csv", numbers)
    return [table.name]


def protocol_table(cells: pd.DataFrame, other: pd.DataFrame | None, other_root: Path) -> Table:
    """This tree's cells beside another tree's (the other protocol), Pass@1 and SoftPass@1 (%), mean ± std."""
    here, there = protocol_of(cells), protocol_of(other) if other is not None else "not run"
    header = ["Model", "Benchmark", "Strategy", f"Feedback ({here} vs {there})"]
    header += [f"{metric} ({label})" for label in (here, there) for metric in ("Pass@1", "SoftPass@1")]
    keys = ["model", "benchmark", "strategy"]
    theirs = {tuple(r[k] for k in keys): r for r in (other.to_dict(orient="records") if other is not None else [])}
    rows = []
    for r in cells.to_dict(orient="records"):
        twin = theirs.get(tuple(r[k] for k in keys))
        row = [r["model"], BENCHMARK_LABELS.get(r["benchmark"], r["benchmark"])]
        feedbacks = [c["feedback"] + (" LEAKY" if c["leaky"] else "") for c in (r, twin) if c]
        row += [STRATEGY_LABELS.get(r["strategy"], r["strategy"]), " vs ".join(feedbacks)]
        for cell in (r, twin):
            for metric in ("pass_at_1", "soft_pass_at_1"):
                row.append(percent(cell[f"{metric}_mean"], cell[f"{metric}_std"]) if cell else "not run")
        rows.append(row)
    protocol = [PROTOCOL_LINES.get(name, f"Protocol: {name}") for name in (here, there) if name in PROTOCOL_LINES]
    protocol.append(f"The other protocol's results tree: {other_root} ({'found' if other is not None else 'not run'}).")
    return Table(PROTOCOL_COMPARISON, f"Protocols side by side: {here} vs {there} (%)", header, rows, protocol=protocol)


def make_tables(
    results: str | os.PathLike[str],
    paper: str | os.PathLike[str] | None = None,
    compare_with: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Write every table of ``results`` to ``results/tables/``; returns the table names.

    ``compare_with``: another results tree (the other protocol); ``protocol_comparison`` sets its cells
    beside ours when it has been run (its ``aggregate/cells.csv`` exists), else says it was not.
    """
    root = Path(results)
    sources = {name: root / "aggregate" / f"{name}.csv" for name in ("cells", "per_task")}
    sources["comparisons"] = root / "stats" / "comparisons.csv"
    require_files(sources.values(), "`promis-repro aggregate` and `promis-repro stats`")
    cells = pd.read_csv(sources["cells"], keep_default_na=True)
    per_task = pd.read_csv(sources["per_task"], dtype={"task_id": str})
    comparisons = pd.read_csv(sources["comparisons"]) if sources["comparisons"].stat().st_size > 1 else pd.DataFrame()
    out = root / "tables"
    names = []
    for (benchmark, feedback), group in cells.groupby(["benchmark", "feedback"], sort=True):
        table = benchmark_table(cells, comparisons, benchmark, feedback)
        numbers = group.drop(columns=["budget", "reward", "data_hash"], errors="ignore")
        if not comparisons.empty:
            keys = ["model", "benchmark", "strategy", "feedback"]
            tests = comparisons[
                [*keys, "p_pass_holm", "p_soft_holm", "p_mcnemar_holm", "p_wilcoxon_holm", "pass_diff", "soft_diff"]
            ]
            numbers = numbers.merge(tests, on=keys, how="left")
        names += _write(table, numbers, out)
    by_difficulty = apps_pass_by_difficulty(per_task)
    for feedback in sorted(set(cells["feedback"])):
        numbers = by_difficulty[by_difficulty["feedback"] == feedback]
        table = difficulty_table(numbers, per_task, cells, feedback)
        if table is not None:
            names += _write(table, numbers.drop(columns="feedback"), out)
    if paper is not None:
        comparison = paper_comparison(load_paper_results(paper), cells, per_task)
        names += _write(paper_table(comparison), comparison, out)
        sources["paper"] = Path(paper)
    if compare_with is not None:
        other_cells = Path(compare_with) / "aggregate" / "cells.csv"
        other = pd.read_csv(other_cells) if other_cells.exists() else None
        table = protocol_table(cells, other, Path(compare_with))
        names += _write(table, pd.DataFrame(table.rows, columns=table.header), out)
        if other is not None:
            sources["compare_with"] = other_cells
    atomic_write_text(out / "index.json", json.dumps(names, indent=2) + "\n")
    write_stage_provenance(out, "tables", sources.values(), {"tables": names})
    return names


#: the metrics of a cell's row, as the tables name them
ROW_METRICS = {"pass_at_1": ("Pass@1", "pass", "passed"), "soft_pass_at_1": ("SoftPass@1", "soft", "soft_pass")}


def comparison_seed(strategy: str, strategies: list[str] | tuple[str, ...], reference: str = REFERENCE) -> int:
    """The bootstrap seed ``compare_strategies`` gives ``strategy``'s comparison in a table of ``strategies``."""
    return 2 * sorted(set(strategies) - {reference}).index(strategy)


def cell_row(
    cells: pd.DataFrame,
    per_task: pd.DataFrame,
    cell: dict[str, str],
    *,
    paper: pd.DataFrame | None = None,
    strategies: list[str] | tuple[str, ...] = (),
    family: int | None = None,
    reference: str = REFERENCE,
    n_resamples: int = 9999,
) -> dict[str, object]:
    """One cell's row: the full tables' numbers for ``cell`` (model, benchmark, strategy, feedback).

    ``cells`` and ``per_task``: ``aggregate``'s files of the cell and, to compare, of ``reference`` (same
    model, benchmark, feedback). ``paper``: ``load_paper_results`` (all of it: each number's CI is seeded
    by its position there, as in ``paper_vs_reproduced``). ``strategies``: the grid's, which fix the
    comparison's bootstrap seed as in ``stats``. ``family``: the comparisons of the cell's table (Holm's
    family); the row gives ``p`` before correction and ``min(1, family * p)``, which bounds the table's
    Holm-adjusted p from above.
    """
    keys = ("model", "benchmark", "strategy", "feedback")
    mine = cells[np.logical_and.reduce([cells[k] == cell[k] for k in keys])]
    if mine.empty:
        raise ValueError(f"no aggregate row for {cell}")
    ours = mine.iloc[0].to_dict()
    row: dict[str, object] = {k: ours[k] for k in (*keys, "leaky", "protocol", "seeds", "seed_list", "n_tasks")}
    for metric in ROW_METRICS:
        row[f"{metric}_mean"], row[f"{metric}_std"] = ours[f"{metric}_mean"], ours[f"{metric}_std"]
    row["generator_calls_mean"] = ours.get("generator_calls_mean")
    tasks = per_task[np.logical_and.reduce([per_task[k] == cell[k] for k in keys])]
    for metric in ROW_METRICS:  # the paper's columns are there, empty, where it reports no number
        row.update(dict.fromkeys([f"paper_{metric}", f"paper_{metric}_source", f"{metric}_minus_paper"]))
        row.update(dict.fromkeys([f"{metric}_minus_paper_ci_low", f"{metric}_minus_paper_ci_high"]))
    if paper is not None:
        comparison = paper_comparison(paper, mine, tasks)
        for r in comparison.to_dict(orient="records") if not comparison.empty else []:
            if r["feedback"] != cell["feedback"]:  # the paper's other numbers: not this cell's
                continue
            metric = r["metric"]
            row[f"paper_{metric}"], row[f"paper_{metric}_source"] = r["paper"], r["source"]
            row[f"{metric}_minus_paper"] = r["diff"]
            row[f"{metric}_minus_paper_ci_low"] = r["diff_ci_low"]
            row[f"{metric}_minus_paper_ci_high"] = r["diff_ci_high"]
    group = per_task[np.logical_and.reduce([per_task[k] == cell[k] for k in ("model", "benchmark", "feedback")])]
    if cell["strategy"] != reference and reference in set(group["strategy"]):
        reference_tasks = group[group["strategy"] == reference]
        result = compare_pair(
            reference_tasks,
            tasks,
            reference_tasks.groupby("seed")["passed"].mean(),
            tasks.groupby("seed")["passed"].mean(),
            seed=comparison_seed(cell["strategy"], [*strategies, cell["strategy"]], reference),
            n_resamples=n_resamples,
        )
        row["reference"] = reference
        row.update(result)
        row["holm_family"] = family
        for test in ("pass", "soft"):
            row[f"p_{test}_bonferroni"] = min(1.0, family * result[f"p_{test}"]) if family else np.nan
    return row


def _interval(low: object, high: object) -> str:
    return "–" if low is None or pd.isna(low) else f"[{100 * float(low):.1f}, {100 * float(high):.1f}]"


def _p(value: object) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.3g}"


def cell_table(row: dict[str, object], cells: pd.DataFrame) -> Table:
    """``cell_row`` as a one-row table, with the protocol block of the cell's tables."""
    reference = row.get("reference")
    header = ["Model", "Benchmark", "Strategy", "Feedback, seeds"]
    body = [
        str(row["model"]),
        BENCHMARK_LABELS.get(str(row["benchmark"]), str(row["benchmark"])),
        STRATEGY_LABELS.get(str(row["strategy"]), str(row["strategy"])),
        f"{row['feedback']}{' LEAKY' if row['leaky'] else ''}, {row['seed_list']}",
    ]
    for metric, (label, test, _) in ROW_METRICS.items():
        header += [f"{label} (mean ± SD)", f"Paper {label}", f"{label} − paper (95% CI)"]
        paper = row.get(f"paper_{metric}")
        paper = None if paper is None or pd.isna(paper) else paper
        versus_paper = "–"
        if paper is not None:
            interval = _interval(row[f"{metric}_minus_paper_ci_low"], row[f"{metric}_minus_paper_ci_high"])
            versus_paper = f"{percent(row[f'{metric}_minus_paper'])} {interval}"
        body += [
            percent(row[f"{metric}_mean"], row[f"{metric}_std"]),
            "not reported" if paper is None else f"{100 * float(paper):.2f}",
            versus_paper,
        ]
        if reference:
            header += [f"{reference} − this, {label} (95% CI)", f"p ({label}; Holm ≤)"]
            body += [
                f"{percent(row[f'{test}_diff'])} {_interval(row[f'{test}_ci_low'], row[f'{test}_ci_high'])}",
                f"{_p(row[f'p_{test}'])} ({_p(row.get(f'p_{test}_bonferroni'))})",
            ]
    mine = cells[(cells["model"] == row["model"]) & (cells["benchmark"] == row["benchmark"])]
    mine = mine[(mine["strategy"] == row["strategy"]) & (mine["feedback"] == row["feedback"])]
    protocol = [line for line in protocol_block(mine, pd.DataFrame()) if not line.startswith(PASS_MARK)]
    if reference:
        protocol.append(
            f"p: the hierarchical-bootstrap p of the difference from {reference} (stats/comparisons.csv's p_pass, "
            f"p_soft) before Holm correction; the full table's Holm-adjusted p lies between it and the bracketed "
            f"min(1, m·p), m = {row.get('holm_family') or '?'} comparisons in that table, so † / ‡ (p < {ALPHA} "
            "after Holm) need the whole table."
        )
    else:
        protocol.append(f"No p: this is the reference strategy, or {REFERENCE} is not in the grid.")
    protocol.append(
        "Paper: config/paper_results.yaml (as in paper_vs_reproduced; CI: 95% hierarchical bootstrap of ours "
        "minus the paper's number)."
    )
    name = f"cell_{row['model']}_{row['benchmark']}_{row['strategy']}"
    title = f"One cell: {row['model']}, {BENCHMARK_LABELS.get(str(row['benchmark']), row['benchmark'])}, "
    title += f"{STRATEGY_LABELS.get(str(row['strategy']), row['strategy'])} (%)"
    return Table(name, title, header, [body], protocol=protocol)
