"""APPS: stdin/stdout and call-based problems with difficulty.

Locally: the 128-problem subset selected by MapCoder (its own JSONL format).
Online: the original APPS test split (``id, question, solutions, input_output,
difficulty, url, starter_code``), the dataset repository's ``test.jsonl`` at a
pinned commit, downloaded through ``huggingface_hub`` (``sources.APPS_TEST``);
``datasets`` is not needed (its versions >= 4 refuse the repository's script).

MapCoder's format writes a call-based test's arguments one per line, strings
raw and everything else as a Python literal, which loses the distinction
between the string ``"123"`` and the number 123. We read each line as a
literal where it parses and as a string otherwise, and give a string parameter
every extra line when a string argument itself spans lines. The original APPS
format keeps exact argument types; prefer it where the network allows.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any

from promis_repro.data.sources import APPS_TEST, DATA_FILES, checked_rows, local_copy, require, resolve_hub
from promis_repro.data.task import CallTests, StdioTests, Task
from promis_repro.errors import UserError
from promis_repro.io import read_jsonl, sha256_of

DIFFICULTIES = ("introductory", "interview", "competition")


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise UserError(f"{where}: tests are neither a list nor a Python literal list") from exc
    if not isinstance(value, list):
        raise UserError(f"{where}: tests are not a list")
    return value


def starter_signature(starter_code: str) -> tuple[str, list[str], int] | None:
    """(function name, parameter names, number of required parameters) of a starter ``def``."""
    source = starter_code.strip()
    if not source:
        return None
    try:
        tree = ast.parse(source + "\n    pass\n")
    except SyntaxError:
        try:
            tree = ast.parse(source + "\n        pass\n")
        except SyntaxError:
            return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            params = [a.arg for a in node.args.args if a.arg != "self"]
            required = len(params) - len(node.args.defaults)
            owner = next(
                (c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and node in c.body),
                None,
            )
            name = f"{owner}().{node.name}" if owner else node.name
            return name, params, required
    return None


def _literal_or_text(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_call_arguments(text: str, n_params: int, n_required: int) -> list[Any]:
    """Split a MapCoder call-based input (one argument per line) into arguments."""
    lines = text.split("\n")
    if n_params == 0:
        return []
    if len(lines) <= n_params:
        return [_literal_or_text(line) for line in lines] if len(lines) >= n_required else [text]
    # more lines than parameters: a string argument spans several lines; give
    # the extra lines to the first argument that does not read as a literal
    extra = len(lines) - n_params
    for start in range(n_params):
        head = lines[:start]
        if all(_literal_or_text(line) is not line for line in head):
            merged = "\n".join(lines[start : start + extra + 1])
            tail = lines[start + extra + 1 :]
            return [_literal_or_text(x) for x in head] + [merged] + [_literal_or_text(x) for x in tail]
    return ["\n".join(lines[: extra + 1])] + [_literal_or_text(x) for x in lines[extra + 1 :]]


def typed_by_column(calls: list[list[Any]]) -> list[list[Any]]:
    """Give a parameter the string type when most tests pass it text that is not a literal.

    MapCoder's format prints ``"12345"`` and ``12345`` alike; when the other
    tests show the parameter is a string, its numeric-looking values are
    strings too.
    """
    width = max((len(c) for c in calls), default=0)
    for column in range(width):
        values = [c[column] for c in calls if len(c) > column]
        if sum(isinstance(v, str) for v in values) * 2 > len(values):
            for call in calls:
                if len(call) > column and not isinstance(call[column], str):
                    call[column] = _as_text(call[column])
    return calls


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value) if not isinstance(value, (int, float)) else str(value)


def _first_output(output: Any) -> Any:
    return output[0] if isinstance(output, list) and len(output) == 1 else output


def _mapcoder_tests(row: dict[str, Any], tests: list[dict[str, Any]], where: str) -> CallTests | StdioTests:
    for test in tests:
        if not isinstance(test, dict) or "input" not in test or "output" not in test:
            raise UserError(f"{where}: a test lacks input/output")
    signature = starter_signature(row.get("starter_code") or "")
    if signature is None:
        return StdioTests(cases=[(str(t["input"]), str(_first_output(t["output"]))) for t in tests])
    name, params, required = signature
    return CallTests(
        entry_point=name,
        groups={
            "tests": typed_by_column([parse_call_arguments(str(t["input"]), len(params), required) for t in tests])
        },
        expected={"tests": [t["output"] for t in tests]},
        oracle="apps",
    )


def load_apps(data_dir: str | os.PathLike[str] | None) -> list[Task]:
    """The local MapCoder subset when ``data_dir`` (or the cache) holds it, else the online test split."""
    path = local_copy("apps", data_dir)
    if path is not None:
        return load_mapcoder(path)
    if data_dir is not None:
        spec = DATA_FILES["apps"]
        raise UserError(
            f"data file {spec.name} ({spec.description}) not found in {data_dir}; add it there, "
            f"or leave out --data-dir to download the APPS test split ({APPS_TEST.label()})"
        )
    return load_apps_online()


def load_mapcoder(path: Path) -> list[Task]:
    """MapCoder's APPS subset (its own format, see the module docstring)."""
    digest = sha256_of(path)
    tasks = []
    for where, row in checked_rows(path, ("id", "description", "difficulty", "test_list", "sample_io", "starter_code")):
        if row["difficulty"] not in DIFFICULTIES:
            raise UserError(f"{where}: unknown difficulty {row['difficulty']!r}")
        hidden = _mapcoder_tests(row, _as_list(row["test_list"], where), where)
        visible = _mapcoder_tests(row, _as_list(row["sample_io"], where), where)
        tasks.append(
            Task(
                benchmark="apps",
                task_id=str(row["id"]),
                prompt=row["description"],
                entry_point=getattr(hidden, "entry_point", None),
                starter_code=row["starter_code"] or "",
                visible_tests=visible,
                hidden_tests=hidden,
                reference_solution=None,
                difficulty=row["difficulty"],
                source_hash=digest,
                description=row["description"],
                extra={"format": "mapcoder"},
            )
        )
    return tasks


def _json_unbounded(text: str) -> Any:
    """``json.loads`` without Python's 4,300-digit cap on integers: some APPS tests hold longer ones."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.loads(text)
    finally:
        sys.set_int_max_str_digits(limit)


def task_from_original(row: dict[str, Any], digest: str = "", where: str | None = None) -> Task:
    """One row of the original APPS release (``input_output`` is a JSON string).

    The release's file names the problem ``id``; the ``datasets`` script renamed it ``problem_id``:
    either is accepted.
    """
    if "problem_id" not in row and "id" in row:
        row = {**row, "problem_id": row["id"]}
    where = where or f"APPS problem {row.get('problem_id')}"
    require(row, ("problem_id", "question", "input_output", "difficulty"), where)
    if row["difficulty"] not in DIFFICULTIES:
        raise UserError(f"{where}: unknown difficulty {row['difficulty']!r}")
    try:
        raw_io = row["input_output"]
        io_spec = _json_unbounded(raw_io) if isinstance(raw_io, str) else raw_io
        solutions = json.loads(row.get("solutions") or "[]")
    except ValueError as exc:
        raise UserError(f"{where}: malformed input_output/solutions JSON ({exc})") from None
    if not isinstance(io_spec, dict):
        raise UserError(f"{where}: input_output is not a JSON object")
    inputs, outputs = io_spec.get("inputs", []), io_spec.get("outputs", [])
    if len(inputs) != len(outputs) or not inputs:
        raise UserError(f"{where}: inputs and outputs differ in length or are empty")
    starter = row.get("starter_code") or ""
    fn_name = io_spec.get("fn_name")
    if fn_name:
        signature = starter_signature(starter)
        entry = signature[0] if signature else fn_name
        hidden: CallTests | StdioTests = CallTests(
            entry_point=entry, groups={"tests": list(inputs)}, expected={"tests": list(outputs)}, oracle="apps"
        )
        visible: CallTests | StdioTests = CallTests(
            entry_point=entry, groups={"tests": list(inputs[:1])}, expected={"tests": list(outputs[:1])}, oracle="apps"
        )
    else:
        cases = [(str(i), "".join(o) if isinstance(o, list) else str(o)) for i, o in zip(inputs, outputs)]
        hidden, visible = StdioTests(cases=cases), StdioTests(cases=cases[:1])
        entry = None
    return Task(
        benchmark="apps",
        task_id=str(row["problem_id"]),
        prompt=row["question"],
        entry_point=entry,
        starter_code=starter,
        visible_tests=visible,
        hidden_tests=hidden,
        reference_solution=solutions[0] if solutions else None,
        difficulty=row["difficulty"],
        source_hash=digest,
        description=row["question"],
        extra={"format": "apps"},
    )


def load_apps_online() -> list[Task]:
    """APPS's test split, from the dataset repository's ``test.jsonl`` at the pinned commit."""
    path = resolve_hub(APPS_TEST)
    digest = sha256_of(path)
    return [task_from_original(row, digest=digest, where=f"{path}:{line}") for line, row in read_jsonl(path)]
