"""The decontaminated MBPP training and selection pools as task lists (built by ``promis-repro data split``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from promis_repro.data.registry import load_benchmark
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.io import cache_root, read_jsonl
from promis_repro.provenance import config_hash

POOL_NAMES = ("train_pool", "selection_pool")


def default_pools_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The pools ``data split`` builds with its defaults, built once into the cache (keyed by those defaults)."""
    from promis_repro.data.split import DECONTAMINATED_BENCHMARKS, DEFAULT_EMBEDDER, DEFAULT_THRESHOLD, build_pools

    settings = {"benchmarks": DECONTAMINATED_BENCHMARKS, "threshold": DEFAULT_THRESHOLD, "embedder": DEFAULT_EMBEDDER}
    directory = cache_root() / "pools" / config_hash(settings)[:16]
    if not (directory / "decontamination.json").exists():  # written last: its presence marks complete pools
        build_pools(data_dir, directory)
    return directory


def load_pool(
    name: str, data_dir: str | os.PathLike[str] | None = None, pools_dir: str | os.PathLike[str] | None = None
) -> list[Task]:
    """Tasks of a pool; without ``pools_dir`` the pools are built once into the cache."""
    if name not in POOL_NAMES:
        raise UserError(f"unknown pool {name!r}; known: {', '.join(POOL_NAMES)}")
    pools_dir = Path(pools_dir) if pools_dir is not None else default_pools_dir(data_dir)
    path = pools_dir / f"{name}.jsonl"
    if not path.exists():
        raise UserError(f"pool file {path} does not exist; run promis-repro data split --out {pools_dir}")
    by_id = {t.task_id: t for t in load_benchmark("mbpp", data_dir)}
    tasks = []
    for line, row in read_jsonl(path):
        task_id = str(row.get("task_id"))
        if task_id not in by_id:
            raise UserError(f"{path}:{line}: task_id {task_id!r} is not an MBPP task")
        task = by_id[task_id]
        # the stamp the agents' environment checks: only tasks that came through a pool file train
        tasks.append(replace(task, extra={**task.extra, "pool": name}))
    return tasks
