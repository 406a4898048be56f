"""Every strategy against ``ppo``, paired by task, per (model, benchmark, feedback).

Only tasks both sides ran are compared. For each pair (``ppo`` vs other):

- The difference in Pass@1 and in SoftPass@1 (each side's mean over its seeds of the per-seed mean over
  tasks: the numbers the tables show), its 95% interval and its two-sided p-value from the hierarchical
  bootstrap (``analysis/bootstrap.py``: seeds of each side, then the paired tasks, resampled), so the
  variance of agent training across seeds is in them. These p-values, Holm-corrected, are the tables'
  significance marks: † Pass@1, ‡ SoftPass@1.
- Secondary, on per-task values: McNemar's exact test on per-task strict pass, the pass being the
  majority over seeds (solved in more than half of them): ``scipy.stats.binomtest`` on the discordant
  tasks (b: only ``ppo`` solves it, c: only the other does), p = 1 when there are none.
- Wilcoxon signed-rank on per-task SoftPass (``scipy.stats.wilcoxon``, zeros dropped), p = 1 when
  every difference is zero.
- Holm-Bonferroni (``statsmodels``) over the family of comparisons in one table: every model and
  every strategy of one (benchmark, feedback), separately for each test.
- Seed level: the per-seed Pass@1 differences over the seeds both ran, their mean and t-interval
  (``scipy.stats.ttest_rel``).
- Minimum detectable difference (two-sided alpha 0.05, power 0.8, normal approximation of the
  paired test): (z_0.975 + z_0.8) * sd(d) / sqrt(n) over n tasks with the observed SD of the
  per-task Pass@1 differences, and (t_0.975 + t_0.8, k-1 df) * sd / sqrt(k) over k seeds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from promis_repro.analysis.aggregate import records, sort_cells, write_csv
from promis_repro.analysis.bootstrap import hierarchical_bootstrap, seed_task_matrix
from promis_repro.analysis.tree import require_files, write_stage_provenance
from promis_repro.grid import REFERENCE_STRATEGY
from promis_repro.io import atomic_write_json

ALPHA = 0.05
POWER = 0.8
REFERENCE = REFERENCE_STRATEGY
GROUP = ["model", "benchmark", "feedback"]
#: the tests of a comparison: the tables' marks (pass, soft: hierarchical bootstrap) and the secondary ones
TESTS = ("pass", "soft", "mcnemar", "wilcoxon")


def _mcnemar(reference: np.ndarray, other: np.ndarray) -> tuple[int, int, float]:
    only_reference = int(np.sum(reference & ~other))
    only_other = int(np.sum(~reference & other))
    discordant = only_reference + only_other
    p = stats.binomtest(only_reference, discordant, 0.5).pvalue if discordant else 1.0
    return only_reference, only_other, float(p)


def _wilcoxon(reference: np.ndarray, other: np.ndarray) -> float:
    if len(reference) == 0 or np.all(reference == other):
        return 1.0
    return float(stats.wilcoxon(reference, other, zero_method="wilcox").pvalue)


def _seed_level(reference: pd.Series, other: pd.Series) -> dict[str, float]:
    common = reference.index.intersection(other.index)
    differences = (reference[common] - other[common]).to_numpy(dtype=float)
    out = {"seeds_paired": len(common), "seed_diff_mean": float("nan"), "seed_ci_low": float("nan")}
    out |= {"seed_ci_high": float("nan"), "mdd_pass_seeds": float("nan")}
    if len(common) == 0:
        return out
    out["seed_diff_mean"] = float(differences.mean())
    if len(common) < 2:
        return out
    spread = differences.std(ddof=1)
    if spread == 0:
        out["seed_ci_low"] = out["seed_ci_high"] = out["seed_diff_mean"]
    else:
        interval = stats.ttest_rel(reference[common], other[common]).confidence_interval(0.95)
        out["seed_ci_low"], out["seed_ci_high"] = float(interval.low), float(interval.high)
    df = len(common) - 1
    critical = stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df)
    out["mdd_pass_seeds"] = _minimum_detectable_difference(spread, len(common), critical)
    return out


def _minimum_detectable_difference(spread: float, n: int, critical: float) -> float:
    """critical * spread / sqrt(n); undefined (NaN) for fewer than two pairs or no observed spread,
    where the formula would give 0 and claim that any difference is detectable."""
    if n < 2 or not spread > 0:
        return float("nan")
    return float(critical * spread / np.sqrt(n))


def compare_pair(
    reference_tasks: pd.DataFrame,
    other_tasks: pd.DataFrame,
    reference_seeds: pd.Series,
    other_seeds: pd.Series,
    seed: int = 0,
    n_resamples: int = 9999,
) -> dict[str, Any]:
    """One comparison. ``*_tasks``: per-task rows (task_id, seed, passed, soft_pass); ``*_seeds``: Pass@1 by seed."""
    left = reference_tasks.groupby("task_id")[["passed", "soft_pass"]].mean()
    right = other_tasks.groupby("task_id")[["passed", "soft_pass"]].mean()
    common = left.index.intersection(right.index).sort_values()
    left, right = left.loc[common], right.loc[common]
    pass_ref, pass_other = left["passed"].to_numpy(float), right["passed"].to_numpy(float)
    soft_ref, soft_other = left["soft_pass"].to_numpy(float), right["soft_pass"].to_numpy(float)
    only_reference, only_other, p_mcnemar = _mcnemar(pass_ref > 0.5, pass_other > 0.5)
    intervals = {
        metric: hierarchical_bootstrap(
            seed_task_matrix(reference_tasks, column, common),
            seed_task_matrix(other_tasks, column, common),
            seed=seed + offset,
            n_resamples=n_resamples,
        )
        for offset, (metric, column) in enumerate((("pass", "passed"), ("soft", "soft_pass")))
    }
    n = len(common)
    spread = float(np.std(pass_ref - pass_other, ddof=1)) if n > 1 else float("nan")
    mdd = _minimum_detectable_difference(spread, n, stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER))
    return {
        "n_tasks": n,
        **{
            key: value
            for metric, interval in intervals.items()
            for key, value in (
                (f"{metric}_diff", interval.estimate),
                (f"{metric}_ci_low", interval.low),
                (f"{metric}_ci_high", interval.high),
                (f"p_{metric}", interval.p_value),
            )
        },
        "only_reference": only_reference,
        "only_other": only_other,
        "p_mcnemar": p_mcnemar,
        "p_wilcoxon": _wilcoxon(soft_ref, soft_other),
        "mdd_pass_tasks": mdd,
        **_seed_level(reference_seeds, other_seeds),
    }


def holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values; a comparison with no p-value (no common tasks) is no test and stays NaN."""
    tested = p_values.dropna()
    adjusted = pd.Series(np.nan, index=p_values.index)
    if not tested.empty:
        adjusted[tested.index] = multipletests(tested.to_numpy(float), alpha=ALPHA, method="holm")[1]
    return adjusted


def compare_strategies(per_task: pd.DataFrame, reference: str = REFERENCE, n_resamples: int = 9999) -> pd.DataFrame:
    """Every strategy of every (model, benchmark, feedback) against ``reference``, Holm-corrected per table.

    ``per_task``: rows (model, benchmark, strategy, feedback, seed, task_id, passed, soft_pass).
    """
    rows = []
    for (model, benchmark, feedback), group in per_task.groupby(GROUP, sort=True):
        if reference not in set(group["strategy"]):
            continue
        reference_tasks = group[group["strategy"] == reference]
        for index, strategy in enumerate(sorted(set(group["strategy"]) - {reference})):
            other_tasks = group[group["strategy"] == strategy]
            result = compare_pair(
                reference_tasks,
                other_tasks,
                reference_tasks.groupby("seed")["passed"].mean(),
                other_tasks.groupby("seed")["passed"].mean(),
                seed=2 * index,
                n_resamples=n_resamples,
            )
            rows.append(
                {
                    "model": model,
                    "benchmark": benchmark,
                    "feedback": feedback,
                    "reference": reference,
                    "strategy": strategy,
                    **result,
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for test in TESTS:
        frame[f"p_{test}_holm"] = frame.groupby(["benchmark", "feedback"])[f"p_{test}"].transform(holm)
        frame[f"significant_{test}"] = frame[f"p_{test}_holm"] < ALPHA
    return sort_cells(frame)


def run_stats(results: str | os.PathLike[str], reference: str = REFERENCE, n_resamples: int = 9999) -> pd.DataFrame:
    """Read ``results/aggregate/``, write ``results/stats/comparisons.{csv,json}`` (the final answers) and
    ``comparisons_at_budget.{csv,json}`` (every strategy's best-so-far answer after k = B generator calls)."""
    root = Path(results)
    sources = [root / "aggregate" / "per_task.csv", root / "aggregate" / "per_task_budget.csv"]
    require_files(sources, f"`promis-repro aggregate --results {root}`")
    out = root / "stats"
    frames = {}
    for name, source in (("comparisons", sources[0]), ("comparisons_at_budget", sources[1])):
        per_task = pd.read_csv(source, dtype={"task_id": str})
        frames[name] = compare_strategies(per_task, reference=reference, n_resamples=n_resamples)
        if "k" in per_task and not frames[name].empty:  # say at which k (generator calls) the sides met
            k = per_task.groupby([*GROUP, "strategy"])["k"].max().rename("k").reset_index()
            frames[name] = frames[name].merge(k, on=[*GROUP, "strategy"], how="left")
        write_csv(out / f"{name}.csv", frames[name])
        atomic_write_json(out / f"{name}.json", records(frames[name]))
    write_stage_provenance(out, "stats", sources, {"reference": reference, "n_resamples": n_resamples})
    return frames["comparisons"]
