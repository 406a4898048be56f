"""``promis-repro evaluate``: output files, formats and one-line errors that never clobber earlier results."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from promis_repro.cli import main

GOOD = "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
WRONG = "def similar_elements(a, b):\n    return ()\n"


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run(*args):
    return subprocess.run([sys.executable, "-m", "promis_repro.cli", *args], capture_output=True, text=True)


def test_evaluate_writes_rows_in_input_order_and_summary(tmp_path, data_dir):
    samples = write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "Mbpp/2", "solution": GOOD, "extra": "ignored"},
            {"task_id": "Mbpp/2", "solution": WRONG},
            {"task_id": "Mbpp/3", "solution": "def is_not_prime(n):\n    return 1/0\n"},
        ],
    )
    out = tmp_path / "out"
    assert main(["evaluate", "--benchmark", "mbppplus", "--samples", str(samples), "--out", str(out),
                 "--data-dir", str(data_dir), "--quiet"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["sample_index"]) for r in rows] == [("Mbpp/2", 0), ("Mbpp/2", 1), ("Mbpp/3", 0)]
    assert [r["status"] for r in rows] == ["pass", "fail", "fail"]
    assert rows[0]["soft_pass"] == 1.0 and len(rows[0]["base"]) == 3 and len(rows[0]["plus"]) == 108
    assert rows[2]["error"] and "ZeroDivisionError" in rows[2]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tasks"] == 2 and summary["n_samples"] == 3
    assert summary["pass_at_1"] == pytest.approx(0.25)
    assert summary["pass_at_k"] == {"pass@1": pytest.approx(0.25)}
    assert set(summary) >= {"benchmark", "soft_pass_at_1", "pass_at_1_base", "soft_pass_at_1_base", "sandbox"}
    prov = summary["provenance"]
    assert set(prov) >= {"config_hash", "data_hashes", "packages", "git_commit", "seed", "model"}
    assert prov["data_hashes"]["mbppplus"].startswith("af43697e")


def test_mbpp_integer_ids_and_import_header(tmp_path, data_dir):
    # no import of math: only the common header makes this pass
    solution = "def is_not_prime(n):\n    return any(n % i == 0 for i in range(2, math.isqrt(n) + 1))\n"
    samples = write(tmp_path / "s.jsonl", [{"task_id": 3, "solution": solution}])
    for header, status in (("none", "fail"), ("common", "pass")):
        out = tmp_path / header
        assert main(["evaluate", "--benchmark", "mbpp", "--samples", str(samples), "--out", str(out),
                     "--data-dir", str(data_dir), "--import-header", header, "--quiet"]) == 0  # fmt: skip
        row = json.loads((out / "results.jsonl").read_text())
        assert row["status"] == status and row["task_id"] == "3"
        assert json.loads((out / "summary.json").read_text())["provenance"]["import_header"] == header


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"task_id": "Mbpp/2", "solution": '], "s.jsonl:1: malformed JSON row"),
        ([{"task_id": "Mbpp/2"}], "s.jsonl:1: a sample needs 'task_id' and 'solution'"),
        ([{"task_id": "Mbpp/99999", "solution": GOOD}], "s.jsonl:1: unknown task_id 'Mbpp/99999'"),
        ([{"task_id": "Mbpp/2", "solution": 3}], "s.jsonl:1: 'solution' is not a string"),
    ],
)
def test_bad_samples_fail_with_one_line_and_keep_earlier_results(tmp_path, data_dir, rows, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text("earlier\n")
    samples = write(tmp_path / "s.jsonl", rows)
    result = run("evaluate", "--benchmark", "mbppplus", "--samples", str(samples), "--out", str(out),
                 "--data-dir", str(data_dir))  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert (out / "results.jsonl").read_text() == "earlier\n"


def test_missing_data_file_and_unknown_benchmark(tmp_path):
    samples = write(tmp_path / "s.jsonl", [{"task_id": "1", "solution": "x = 1"}])
    result = run("evaluate", "--benchmark", "mbpp_sanitized", "--samples", str(samples), "--out", str(tmp_path / "o"),
                 "--data-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 2
    assert "mbpp_sanitized.jsonl" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run("evaluate", "--benchmark", "nope", "--samples", str(samples), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr


def _subcommands(parser):
    """(name, subparser) of every leaf subcommand of the promis-repro parser."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = list(_subcommands(sub))
                yield from nested or [(name, sub)]


def test_every_command_calls_one_stage_with_exactly_its_options():
    import argparse
    import inspect

    from promis_repro.cli import build_parser, stage_function

    commands = dict(_subcommands(build_parser()))
    assert {"evaluate", "evaluate-cell", "generate", "run", "train", "aggregate", "stats", "tables", "figures",
            "provenance", "fetch", "split", "references"} <= set(commands)  # fmt: skip
    for name, sub in commands.items():
        function = stage_function(argparse.Namespace(**sub._defaults))
        assert function.__module__.startswith("promis_repro.stages."), name
        dests = {a.dest for a in sub._actions if a.dest != "help"}
        parameters = inspect.signature(function).parameters
        required = {k for k, p in parameters.items() if p.default is inspect.Parameter.empty}
        assert required <= dests, (name, required - dests)
        assert dests <= set(parameters), (name, dests - set(parameters))  # no option is silently dropped
