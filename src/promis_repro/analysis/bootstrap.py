"""The hierarchical bootstrap over seeds and tasks: intervals and tests that carry every source of variance.

A cell's number is the mean over its seeds of the per-seed mean over tasks (Pass@1 or SoftPass@1).
Two things vary if the study is run again: the agent (each seed trains its own agent and samples its
own generations) and the tasks (a benchmark is a sample of problems). Each resample therefore draws
the seeds of each side with replacement (independently: seed 1 of one strategy has nothing to do with
seed 1 of another) and the tasks with replacement (once, shared by both sides, since tasks are paired,
and by all the drawn seeds: a two-way, crossed design over the seeds x tasks grid, which is slightly
conservative next to a nested one), and recomputes the mean over the drawn seeds and tasks. The 95%
interval is the 2.5 and 97.5 percentiles of the resampled statistic; the two-sided p-value against no difference is
``min(1, 2 min((#{d* <= 0} + 1) / (R + 1), (#{d* >= 0} + 1) / (R + 1)))``.

Resampling weights are multinomial counts, so one resample of an S x T matrix costs a matrix product;
a seed that lacks a task (NaN) is left out of that task's mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
CHUNK = 512  # resamples per matrix product (bounds memory: CHUNK x tasks)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    p_value: float  # two-sided, against 0 (meaningful for differences)


def seed_task_matrix(rows: pd.DataFrame, column: str, tasks: pd.Index) -> np.ndarray:
    """Rows (seed, task_id, ``column``) as a seeds x tasks matrix over ``tasks`` (NaN where a seed lacks a task).

    Rows without a seed column are one seed.
    """
    if "seed" not in rows:
        rows = rows.assign(seed=0)
    table = rows.pivot_table(index="seed", columns="task_id", values=column, aggfunc="mean")
    return table.reindex(columns=tasks).to_numpy(float)


def _mean_of_seed_means(matrix: np.ndarray) -> float:
    """The tables' number: the mean over seeds of each seed's mean over the tasks it ran."""
    with np.errstate(invalid="ignore"):
        per_seed = np.nanmean(matrix, axis=1) if matrix.size else np.array([np.nan])
    return float(np.nanmean(per_seed)) if not np.all(np.isnan(per_seed)) else float("nan")


def _weighted_means(matrix: np.ndarray, seed_weights: np.ndarray, task_weights: np.ndarray) -> np.ndarray:
    """Mean over the drawn seeds and tasks for each resample (rows of the weight matrices)."""
    present = ~np.isnan(matrix)
    values = np.where(present, matrix, 0.0)
    total = ((seed_weights @ values) * task_weights).sum(axis=1)
    count = ((seed_weights @ present.astype(float)) * task_weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def hierarchical_bootstrap(
    reference: np.ndarray,
    other: np.ndarray | None = None,
    *,
    seed: int = 0,
    n_resamples: int = 9999,
    offset: float = 0.0,
) -> Interval:
    """Mean of ``reference`` (seeds x tasks) minus the mean of ``other`` (same tasks) or ``offset``.

    With ``other`` None the statistic is ``mean(reference) - offset`` (a number from a paper beside ours).
    """
    n_tasks = reference.shape[1]
    estimate = _mean_of_seed_means(reference) - (_mean_of_seed_means(other) if other is not None else offset)
    if n_tasks == 0 or np.isnan(estimate):
        return Interval(float("nan"), float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        tasks = rng.multinomial(n_tasks, np.full(n_tasks, 1 / n_tasks), size=size).astype(float)
        seeds = rng.multinomial(len(reference), np.full(len(reference), 1 / len(reference)), size=size).astype(float)
        draw = _weighted_means(reference, seeds, tasks)
        if other is not None:
            other_seeds = rng.multinomial(len(other), np.full(len(other), 1 / len(other)), size=size).astype(float)
            draw = draw - _weighted_means(other, other_seeds, tasks)
        else:
            draw = draw - offset
        draws.append(draw)
    resampled = np.concatenate(draws)
    resampled = resampled[~np.isnan(resampled)]
    if len(resampled) == 0:
        return Interval(estimate, float("nan"), float("nan"), float("nan"))
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    below = (np.sum(resampled <= 0) + 1) / (len(resampled) + 1)
    above = (np.sum(resampled >= 0) + 1) / (len(resampled) + 1)
    return Interval(estimate, float(low), float(high), float(min(1.0, 2 * min(below, above))))
