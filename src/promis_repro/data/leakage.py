"""The guard between training and evaluation: no strategy is evaluated on a task the agents trained or
were selected on.

``TrainingSide`` is what ``data split`` wrote (``train_pool.jsonl``, ``selection_pool.jsonl``,
``decontamination.json``). ``check`` refuses, with one line naming the task, any evaluation task that
 * has the MBPP id of a pool task (MBPP, MBPP sanitized and MBPP+ share MBPP's ids),
 * has the normalized text of a pool task, or
 * belongs to a benchmark the pools were not decontaminated against and is a MiniLM near-duplicate
   (cosine >= the split's threshold) of a pool task.
For the benchmarks the pools were decontaminated against, the near-duplicates left the pools when
they were built (``data/split.py``); ``audit`` re-measures all three kinds of match for the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promis_repro.data.mbpp import mbpp_id
from promis_repro.data.pools import POOL_NAMES, default_pools_dir
from promis_repro.data.split import evaluation_text, normalize_text
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.io import read_json, read_jsonl, sha256_of

DECONTAMINATION = "decontamination.json"


@dataclass(frozen=True)
class PoolTask:
    pool: str
    task_id: str  # the MBPP id, as the pool file writes it
    text: str  # the MBPP description (what a leak would share)


@dataclass(frozen=True)
class TrainingSide:
    directory: Path
    tasks: tuple[PoolTask, ...]
    benchmarks: tuple[str, ...]  # what the pools were decontaminated against
    threshold: float
    embedder: str
    hashes: dict[str, str]  # sha256 of the pool files and decontamination.json

    @classmethod
    def load(
        cls, pools_dir: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None = None
    ) -> TrainingSide:
        """The pools in ``pools_dir`` (else the cached default pools, built when missing)."""
        from promis_repro.data.registry import load_benchmark

        directory = Path(pools_dir) if pools_dir is not None else default_pools_dir(data_dir)
        files = {name: directory / f"{name}.jsonl" for name in POOL_NAMES} | {
            "decontamination": directory / DECONTAMINATION
        }
        for path in files.values():
            if not path.exists():
                raise UserError(f"{path} does not exist; run promis-repro data split --out {directory}")
        report = read_json(files["decontamination"])
        descriptions = {t.task_id: t.description for t in load_benchmark("mbpp", data_dir)}
        tasks = []
        for name in POOL_NAMES:
            for line, row in read_jsonl(files[name]):
                task_id = str(row.get("task_id"))
                if task_id not in descriptions:
                    raise UserError(f"{files[name]}:{line}: task_id {task_id!r} is not an MBPP task")
                tasks.append(PoolTask(name, task_id, descriptions[task_id]))
        return cls(
            directory,
            tuple(tasks),
            tuple(report.get("evaluation_benchmarks", ())),
            float(report.get("threshold", 0.9)),
            str(report.get("embedder", "all-minilm-l6-v2")),
            {name: sha256_of(path) for name, path in files.items()},
        )

    def matches(self, tasks: list[Task], *, embeddings: bool) -> list[dict[str, Any]]:
        """Every (evaluation task, pool task) pair that matches by id, text or (with ``embeddings``) MiniLM."""
        threshold = self.threshold if embeddings else None
        return find_matches(tasks, list(self.tasks), threshold=threshold, embedder=self.embedder)

    def check(self, benchmark: str, tasks: list[Task]) -> None:
        """Refuse (one line naming the task) to evaluate a task the agents trained or were selected on."""
        leaks = self.matches(tasks, embeddings=False)
        if not leaks and benchmark not in self.benchmarks:  # near-duplicates left the pools only for these
            leaks = self.matches(tasks, embeddings=True)
        if leaks:
            leak = leaks[0]
            more = f" ({len(leaks) - 1} more)" if len(leaks) > 1 else ""
            raise UserError(
                f"task {leak['benchmark']}/{leak['task_id']} matches MBPP task {leak['pool_task_id']} of the "
                f"{leak['pool'].replace('_', ' ')} by {leak['kind']}: agents trained or were selected on it, so no "
                f"strategy is evaluated on it{more} (pools: {self.directory})"
            )


def find_matches(
    tasks: list[Task], pool: list[PoolTask], *, threshold: float | None, embedder: str = "all-minilm-l6-v2"
) -> list[dict[str, Any]]:
    """(evaluation task, pool task) pairs sharing an MBPP id or a normalized text, or (``threshold`` set)
    whose MiniLM cosine similarity is at least ``threshold``."""
    by_id = {int(t.task_id): t for t in pool}
    by_text = {normalize_text(t.text): t for t in pool}
    found = []
    for task in tasks:
        number = mbpp_id(task)
        if number is not None and number in by_id:
            found.append(_match(task, by_id[number], "id"))
        text = normalize_text(evaluation_text(task))
        if text in by_text:
            found.append(_match(task, by_text[text], "text"))
    if threshold is not None and tasks and pool:
        from promis_repro.embedding import embed

        similarity = embed([evaluation_text(t) for t in tasks], embedder) @ embed([t.text for t in pool], embedder).T
        for row, column in zip(*np.nonzero(similarity >= threshold), strict=True):
            found.append(_match(tasks[row], pool[column], "embedding", float(similarity[row, column])))
    return found


def _match(task: Task, pool_task: PoolTask, kind: str, similarity: float | None = None) -> dict[str, Any]:
    return {
        "benchmark": task.benchmark,
        "task_id": task.task_id,
        "pool": pool_task.pool,
        "pool_task_id": pool_task.task_id,
        "kind": kind,
        "similarity": similarity,
    }
