"""Benchmark names and their loaders."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from promis_repro.data.apps import load_apps
from promis_repro.data.mbpp import load_mbpp, load_mbpp_sanitized
from promis_repro.data.plus import load_humaneval, load_humanevalplus, load_mbppplus
from promis_repro.data.task import Task
from promis_repro.errors import UserError
from promis_repro.grid import BENCHMARKS

LOADERS: dict[str, Callable[[str | os.PathLike[str] | None], list[Task]]] = {
    "mbpp": load_mbpp,
    "mbpp_sanitized": load_mbpp_sanitized,
    "mbppplus": load_mbppplus,
    "humaneval": load_humaneval,
    "humanevalplus": load_humanevalplus,
    "apps": load_apps,
}
if tuple(LOADERS) != BENCHMARKS:  # the grid's vocabulary and the loaders must name the same benchmarks
    raise RuntimeError(f"benchmark loaders {tuple(LOADERS)} differ from grid.BENCHMARKS {BENCHMARKS}")


@functools.cache
def _load(name: str, data_dir: str | None) -> tuple[Task, ...]:
    return tuple(LOADERS[name](data_dir))


def load_benchmark(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Task]:
    if name not in LOADERS:
        raise UserError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return list(_load(name, None if data_dir is None else os.fspath(data_dir)))


def normalize_task_id(benchmark: str, raw: object) -> str:
    """Task ids as the benchmark writes them; MBPP's integer ids may arrive as ints or strings."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise UserError(f"task_id {raw!r} is neither a string nor an integer")
    return str(raw).strip()


#: benchmarks evaluated on one split only: MBPP's original test split (ids 11-510, the split the paper's
#: README table reports); its prompt, validation and train splits are the few-shot, selection and training side.
#: MBPP sanitized keeps MBPP's ids and splits (EPiC merges them; here only its test-split tasks are evaluated).
EVALUATION_SPLITS = {"mbpp": "test", "mbpp_sanitized": "test"}


def evaluation_tasks(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Task]:
    """The tasks of a benchmark that strategies are evaluated on (``mbpp``: its test split only)."""
    tasks = load_benchmark(name, data_dir)
    split = EVALUATION_SPLITS.get(name)
    return [t for t in tasks if t.extra.get("split") == split] if split else tasks
