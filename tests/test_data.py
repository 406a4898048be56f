"""Benchmark loaders: counts, splits, visible tests, hashes and clear errors on bad data."""

from __future__ import annotations

import gzip
import json
import re
import shutil

import pytest

from promis_repro.data.apps import parse_call_arguments, starter_signature, task_from_original
from promis_repro.data.mbpp import split_of
from promis_repro.data.registry import BENCHMARKS, load_benchmark
from promis_repro.data.sources import DATA_FILES
from promis_repro.data.task import AssertTests, CallTests, StdioTests
from promis_repro.errors import UserError
from promis_repro.io import sha256_of

COUNTS = {"mbpp": 974, "mbpp_sanitized": 427, "mbppplus": 378, "humaneval": 164, "humanevalplus": 164, "apps": 128}


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_counts_and_fields(benchmark, data_dir):
    tasks = load_benchmark(benchmark, data_dir)
    assert len(tasks) == COUNTS[benchmark]
    assert len({t.task_id for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.benchmark == benchmark
        assert task.prompt.strip()
        assert task.source_hash
        assert task.hidden_tests.count() > 0 or (benchmark == "humaneval")


def test_pinned_hashes_match_provenance(data_dir):
    for key, spec in DATA_FILES.items():
        assert sha256_of(data_dir / spec.name) == spec.sha256, key


def test_mbpp_splits_and_tests(data_dir):
    tasks = {t.task_id: t for t in load_benchmark("mbpp", data_dir)}
    assert [split_of(n) for n in (1, 10, 11, 510, 511, 600, 601, 974)] == [
        "prompt", "prompt", "test", "test", "validation", "validation", "train", "train",
    ]  # fmt: skip
    counts = {}
    for task in tasks.values():
        counts[task.extra["split"]] = counts.get(task.extra["split"], 0) + 1
    assert counts == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    first = tasks["1"]
    assert isinstance(first.hidden_tests, AssertTests) and len(first.hidden_tests.asserts) == 3
    assert first.visible_tests.asserts == first.hidden_tests.asserts[:1]
    assert first.entry_point == "min_cost"
    assert "setup" in tasks["367"].hidden_tests.__dataclass_fields__ and "Node(1)" in tasks["367"].hidden_tests.setup


def test_mbppplus_inputs_are_deserialized_and_visible_test_is_the_shown_assert(data_dir):
    tasks = {t.task_id: t for t in load_benchmark("mbppplus", data_dir)}
    task = tasks["Mbpp/2"]
    assert isinstance(task.hidden_tests, CallTests)
    assert task.hidden_tests.groups["base"][0] == [(3, 4, 5, 6), (5, 7, 4, 10)]  # tuples restored by EvalPlus
    assert task.visible_tests.asserts == ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"]
    assert sum(t.hidden_tests.count() for t in tasks.values()) == 1174 + 39841


def test_humanevalplus_visible_tests_are_docstring_examples(data_dir):
    task = load_benchmark("humanevalplus", data_dir)[0]
    assert task.visible_tests.asserts == [
        "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True",
    ]
    assert sum(t.hidden_tests.count() for t in load_benchmark("humanevalplus", data_dir)) == 1570 + 122683


def test_apps_kinds_and_difficulties(data_dir):
    tasks = load_benchmark("apps", data_dir)
    kinds = {type(t.hidden_tests) for t in tasks}
    assert kinds == {CallTests, StdioTests}
    difficulties = {t.difficulty for t in tasks}
    assert difficulties == {"introductory", "interview", "competition"}
    assert sum(t.difficulty == "introductory" for t in tasks) == 49


def test_apps_call_argument_parsing():
    assert parse_call_arguments("apples\ngrapes\n['#', '!']", 2, 2) == ["apples\ngrapes", ["#", "!"]]
    assert parse_call_arguments("4\n[1, 2]", 2, 2) == [4, [1, 2]]
    assert parse_call_arguments("13", 3, 1) == [13]
    assert parse_call_arguments("hello world", 1, 1) == ["hello world"]
    assert starter_signature("\ndef converter(n, decimals=0, base=pi):\n\t") == (
        "converter",
        ["n", "decimals", "base"],
        1,
    )
    assert starter_signature("class Solution:\n    def twoSum(self, nums, target):\n") == (
        "Solution().twoSum",
        ["nums", "target"],
        2,
    )


def test_apps_original_format_rows():
    stdio = task_from_original(
        {
            "problem_id": 7,
            "question": "Print the sum.",
            "input_output": json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]}),
            "solutions": json.dumps(["a, b = map(int, input().split())\nprint(a + b)\n"]),
            "difficulty": "introductory",
            "starter_code": "",
        }
    )
    assert isinstance(stdio.hidden_tests, StdioTests) and stdio.reference_solution
    call = task_from_original(
        {
            "problem_id": 8,
            "question": "Add.",
            "input_output": json.dumps({"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"}),
            "difficulty": "interview",
            "starter_code": "def add(a, b):\n",
        }
    )
    assert isinstance(call.hidden_tests, CallTests) and call.entry_point == "add"


def test_corrupt_row_names_file_and_line(tmp_path, data_dir):
    shutil.copy(data_dir / "mbpp.jsonl", tmp_path / "mbpp.jsonl")
    with open(tmp_path / "mbpp.jsonl", "a") as handle:
        handle.write("{not json\n")
    # the pinned hash no longer matches: the error names the file and both hashes
    with pytest.raises(UserError, match=r"mbpp\.jsonl has sha256"):
        load_benchmark("mbpp", tmp_path)


def test_malformed_jsonl_row_is_reported_with_its_line(tmp_path):
    from promis_repro.io import read_jsonl

    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('{"a": 1}\n{broken\n')
    with pytest.raises(UserError, match=r"rows.jsonl.gz:2: malformed JSON row"):
        list(read_jsonl(path))


def test_missing_data_file_says_which(tmp_path):
    with pytest.raises(UserError, match=r"mbpp_sanitized\.jsonl .* not found in"):
        load_benchmark("mbpp_sanitized", tmp_path)


def test_unknown_benchmark_lists_known_ones():
    with pytest.raises(UserError, match=re.escape("unknown benchmark 'mbpp++'; known: mbpp, ")):
        load_benchmark("mbpp++")
