"""MBPP full (974 tasks, original splits) and MBPP sanitized (427 hand-checked tasks)."""

from __future__ import annotations

import ast
import os
import warnings

from promis_repro.data.sources import checked_rows, resolve
from promis_repro.data.task import AssertTests, Task
from promis_repro.errors import UserError
from promis_repro.io import sha256_of

#: MBPP's own split of task ids (google-research README).
SPLITS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601), "train": range(601, 975)}


def split_of(task_number: int) -> str:
    for name, ids in SPLITS.items():
        if task_number in ids:
            return name
    raise ValueError(f"MBPP task id {task_number} is outside 1-974")


def mbpp_id(task: Task) -> int | None:
    """The MBPP task number behind a task of the MBPP family (MBPP+ keeps it), else None."""
    if task.benchmark in ("mbpp", "mbpp_sanitized"):
        return int(task.task_id)
    number = task.extra.get("mbpp_id")
    return int(number) if number is not None else None


def called_function(assert_source: str, defined: set[str]) -> str | None:
    """The function an MBPP assert calls that the reference code defines (its entry point)."""
    try:
        tree = ast.parse(assert_source)
    except SyntaxError:
        return None
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    for name in calls:
        if name in defined:
            return name
    return calls[0] if calls else None


def defined_names(code: str) -> set[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MBPP code has "\s" in plain strings
            tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}


def mbpp_prompt(description: str, shown_test: str) -> str:
    """The task as shown to a model: the description and one of its asserts (MBPP+'s convention)."""
    return f"{description.strip()}\n{shown_test.strip()}\n"


def _task(benchmark: str, number: int, description: str, code: str, setup: str, tests: list[str], digest: str) -> Task:
    entry = called_function(tests[0], defined_names(code))
    return Task(
        benchmark=benchmark,
        task_id=str(number),
        prompt=mbpp_prompt(description, tests[0]),
        entry_point=entry,
        starter_code="",
        visible_tests=AssertTests(setup=setup, asserts=tests[:1], entry_point=entry),
        hidden_tests=AssertTests(setup=setup, asserts=list(tests), entry_point=entry),
        reference_solution=code,
        source_hash=digest,
        description=description.strip(),
        extra={"split": split_of(number)},
    )


def _load(benchmark: str, data_dir: str | os.PathLike[str] | None, fields: tuple[str, ...]) -> list[Task]:
    """MBPP-format rows: ``fields`` name the description, the setup code (a string, or a list of import lines)."""
    description, setup = fields
    path = resolve(benchmark, data_dir)
    digest = sha256_of(path)
    tasks = []
    for where, row in checked_rows(path, ("task_id", description, "code", "test_list", setup)):
        if not row["test_list"]:
            raise UserError(f"{where}: empty test_list")
        setup_code = row[setup] if isinstance(row[setup], str) else "\n".join(row[setup])
        tasks.append(
            _task(benchmark, int(row["task_id"]), row[description], row["code"], setup_code, row["test_list"], digest)
        )
    return tasks


def load_mbpp(data_dir: str | os.PathLike[str] | None) -> list[Task]:
    return _load("mbpp", data_dir, ("text", "test_setup_code"))


def load_mbpp_sanitized(data_dir: str | os.PathLike[str] | None) -> list[Task]:
    return _load("mbpp_sanitized", data_dir, ("prompt", "test_imports"))
