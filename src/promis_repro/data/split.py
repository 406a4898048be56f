"""Leakage control: the RL training pool (MBPP train) and selection pool (MBPP validation), decontaminated.

A task leaves a pool when it also appears in an evaluation benchmark (by default the MBPP test
split, MBPP+, HumanEval+ and APPS, plus any other benchmark a grid evaluates), by any of three
tests, all recorded in ``decontamination.json`` with the nearest evaluation task:
  * ``id``: its MBPP id is the MBPP id of an evaluation task (MBPP+ is built from MBPP);
  * ``text``: its normalized description equals an evaluation prompt's;
  * ``embedding``: MiniLM cosine similarity >= threshold with an evaluation prompt.
The pools are all that training and prompt selection may ever see.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from promis_repro.data.mbpp import mbpp_id
from promis_repro.data.registry import evaluation_tasks, load_benchmark
from promis_repro.data.task import Task
from promis_repro.embedding import embed
from promis_repro.io import atomic_write_json, atomic_write_jsonl
from promis_repro.provenance import provenance

#: what the pools are always decontaminated against: the paper's benchmarks (``mbpp``: its test split)
DECONTAMINATED_BENCHMARKS = ("mbpp", "mbppplus", "humanevalplus", "apps")
DEFAULT_THRESHOLD = 0.9
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
POOLS = {"train_pool": "train", "selection_pool": "validation"}


def normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", text.lower())).strip()


def evaluation_text(task: Task) -> str:
    """The natural-language statement of an evaluation task (what a leak would share)."""
    return task.description or task.prompt


def pool_record(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "split": task.extra["split"],
        "prompt": task.prompt,
        "entry_point": task.entry_point,
    }


def decontaminated_benchmarks(extra: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    """The paper's benchmarks, then any other benchmark a grid evaluates, once each."""
    return tuple(dict.fromkeys([*DECONTAMINATED_BENCHMARKS, *extra]))


def build_pools(
    data_dir: str | os.PathLike[str] | None,
    out: Path,
    *,
    benchmarks: list[str] | tuple[str, ...] = DECONTAMINATED_BENCHMARKS,
    threshold: float = DEFAULT_THRESHOLD,
    embedder: str = DEFAULT_EMBEDDER,
) -> dict[str, Any]:
    benchmarks = decontaminated_benchmarks(benchmarks)
    mbpp = load_benchmark("mbpp", data_dir)
    evaluation = [t for name in benchmarks for t in evaluation_tasks(name, data_dir)]
    evaluated_ids = {mbpp_id(t): i for i, t in enumerate(evaluation) if mbpp_id(t) is not None}
    eval_texts = [evaluation_text(t) for t in evaluation]
    eval_norm = {normalize_text(text): i for i, text in enumerate(eval_texts)}

    candidates = [t for t in mbpp if t.extra["split"] in POOLS.values()]
    similarity = embed([t.description for t in candidates], embedder) @ embed(eval_texts, embedder).T

    pools: dict[str, list[dict[str, Any]]] = {name: [] for name in POOLS}
    removed = []
    for row, task in enumerate(candidates):
        nearest = int(np.argmax(similarity[row]))
        reasons = []
        if int(task.task_id) in evaluated_ids:
            reasons.append("id")
            nearest = evaluated_ids[int(task.task_id)]
        if normalize_text(task.description) in eval_norm:
            reasons.append("text")
        if similarity[row].max() >= threshold:
            reasons.append("embedding")
        pool = next(name for name, split in POOLS.items() if split == task.extra["split"])
        if reasons:
            near = evaluation[nearest]
            removed.append(
                {
                    "task_id": task.task_id,
                    "pool": pool,
                    "reasons": reasons,
                    "nearest": {
                        "benchmark": near.benchmark,
                        "task_id": near.task_id,
                        "similarity": round(float(similarity[row, nearest]), 4),
                    },
                }
            )
        else:
            pools[pool].append(pool_record(task))

    counts = {name: len(rows) for name, rows in pools.items()}
    counts["removed"] = len(removed)
    for reason in ("id", "text", "embedding"):
        counts[f"removed_{reason}"] = sum(reason in r["reasons"] for r in removed)
    hashes = {t.benchmark: t.source_hash for t in [*mbpp[:1], *evaluation]}
    report = {
        "threshold": threshold,
        "embedder": embedder,
        "evaluation_benchmarks": list(benchmarks),
        "counts": counts,
        "removed": removed,
        "provenance": provenance(
            config={
                "command": "data split",
                "benchmarks": list(benchmarks),
                "threshold": threshold,
                "embedder": embedder,
            },
            data_hashes=hashes,
            model={"embedder": embedder},
        ),
    }
    for name, rows in pools.items():
        atomic_write_jsonl(out / f"{name}.jsonl", rows)
    atomic_write_json(out / "decontamination.json", report)
    return report
