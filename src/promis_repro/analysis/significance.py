"""Every strategy against ``ppo``, paired by task, per (model, benchmark, feedback).

Per task, a strategy's strict pass and SoftPass are averaged over its seeds; only tasks both sides
ran are compared. For each pair (``ppo`` vs other):

- McNemar's exact test on per-task strict pass, the pass being the majority over seeds (solved in
  more than half of them): ``scipy.stats.binomtest`` on the discordant tasks (b: only ``ppo``
  solves it, c: only the other does), p = 1 when there are none.
- Wilcoxon signed-rank on per-task SoftPass (``scipy.stats.wilcoxon``, zeros dropped), p = 1 when
  every difference is zero.
- Paired bootstrap 95% CIs of the difference in Pass@1 and in SoftPass@1 (``scipy.stats.bootstrap``,
  BCa, resampling tasks; a constant difference has that constant as its interval).
- Holm-Bonferroni (``statsmodels``) over the family of comparisons in one table: every model and
  every strategy of one (benchmark, feedback), separately for McNemar and for Wilcoxon.
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
from promis_repro.analysis.tree import require_files, write_stage_provenance
from promis_repro.grid import REFERENCE_STRATEGY
from promis_repro.io import atomic_write_json

ALPHA = 0.05
POWER = 0.8
REFERENCE = REFERENCE_STRATEGY
GROUP = ["model", "benchmark", "feedback"]


def mean_ci(values: np.ndarray, seed: int, n_resamples: int = 9999) -> tuple[float, float]:
    """BCa bootstrap 95% CI of the mean, tasks resampled; a constant sample has that constant as its interval.

    On paired differences this is the paired bootstrap: resampling tasks resamples both sides together.
    """
    if len(values) == 0:
        return (float("nan"), float("nan"))
    if np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


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
    pass_ci = mean_ci(pass_ref - pass_other, seed, n_resamples)
    soft_ci = mean_ci(soft_ref - soft_other, seed + 1, n_resamples)
    n = len(common)
    spread = float(np.std(pass_ref - pass_other, ddof=1)) if n > 1 else float("nan")
    mdd = _minimum_detectable_difference(spread, n, stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER))
    return {
        "n_tasks": n,
        "pass_diff": float(np.mean(pass_ref - pass_other)) if n else float("nan"),
        "pass_ci_low": pass_ci[0],
        "pass_ci_high": pass_ci[1],
        "soft_diff": float(np.mean(soft_ref - soft_other)) if n else float("nan"),
        "soft_ci_low": soft_ci[0],
        "soft_ci_high": soft_ci[1],
        "only_reference": only_reference,
        "only_other": only_other,
        "p_mcnemar": p_mcnemar,
        "p_wilcoxon": _wilcoxon(soft_ref, soft_other),
        "mdd_pass_tasks": mdd,
        **_seed_level(reference_seeds, other_seeds),
    }


def holm(p_values: pd.Series) -> pd.Series:
    if p_values.empty:
        return p_values
    return pd.Series(multipletests(p_values.to_numpy(float), alpha=ALPHA, method="holm")[1], index=p_values.index)


def compare_strategies(
    per_task: pd.DataFrame, per_seed: pd.DataFrame, reference: str = REFERENCE, n_resamples: int = 9999
) -> pd.DataFrame:
    """Every strategy of every (model, benchmark, feedback) against ``reference``, Holm-corrected per table."""
    rows = []
    for (model, benchmark, feedback), group in per_task.groupby(GROUP, sort=True):
        if reference not in set(group["strategy"]):
            continue
        seeds = per_seed[
            (per_seed["model"] == model) & (per_seed["benchmark"] == benchmark) & (per_seed["feedback"] == feedback)
        ]
        ref_seeds = seeds[seeds["strategy"] == reference].set_index("seed")["pass_at_1"]
        for index, strategy in enumerate(sorted(set(group["strategy"]) - {reference})):
            other_seeds = seeds[seeds["strategy"] == strategy].set_index("seed")["pass_at_1"]
            result = compare_pair(
                group[group["strategy"] == reference],
                group[group["strategy"] == strategy],
                ref_seeds,
                other_seeds,
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
    for test in ("mcnemar", "wilcoxon"):
        frame[f"p_{test}_holm"] = frame.groupby(["benchmark", "feedback"])[f"p_{test}"].transform(holm)
        frame[f"significant_{test}"] = frame[f"p_{test}_holm"] < ALPHA
    return sort_cells(frame)


def run_stats(results: str | os.PathLike[str], reference: str = REFERENCE, n_resamples: int = 9999) -> pd.DataFrame:
    """Read ``results/aggregate/``, write ``results/stats/comparisons.{csv,json}``."""
    root = Path(results)
    sources = [root / "aggregate" / "per_task.csv", root / "aggregate" / "per_seed.csv"]
    require_files(sources, f"`promis-repro aggregate --results {root}`")
    per_task = pd.read_csv(sources[0], dtype={"task_id": str})
    per_seed = pd.read_csv(sources[1])
    frame = compare_strategies(per_task, per_seed, reference=reference, n_resamples=n_resamples)
    out = root / "stats"
    write_csv(out / "comparisons.csv", frame)
    atomic_write_json(out / "comparisons.json", records(frame))
    write_stage_provenance(out, "stats", sources, {"reference": reference, "n_resamples": n_resamples})
    return frame
