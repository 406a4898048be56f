"""The multi-level evaluation (evaluation/levels.py): each level's formula on hand-made programs, the
levels of real reference solutions and of correct-but-worse variants, and that levels change no verdict."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from radon.metrics import mi_visit

from promis_repro.errors import UserError
from promis_repro.evaluation import levels as levels_module
from promis_repro.evaluation.agreement import correct_but_worse
from promis_repro.evaluation.execute import ProgramResult
from promis_repro.evaluation.levels import (
    DEFAULT_WEIGHTS,
    LevelSettings,
    ReferenceProfile,
    efficiency_parts,
    level_settings,
    multi_score,
    program_levels,
    quality_parts,
    syntax_level,
)
from promis_repro.rewards import RewardConfig, step_reward

VERDICT_KEYS = ("status", "passed", "soft_pass", "passed_base", "soft_pass_base", "base", "plus", "outcomes", "error")


def _result(passed: bool, cpu: float | None = 0.1, rss: int | None = 100, executed: bool = True) -> ProgramResult:
    result = ProgramResult("pass" if passed else "fail", [])
    result.executed, result.cpu_seconds, result.max_rss_bytes = executed, cpu, rss
    return result


def test_syntax_level():
    assert syntax_level("def f(x):\n    return x\n") == 1
    assert syntax_level("def f(:\n    pass\n") == 0
    assert syntax_level("x = 1\0") == 0  # ast.parse refuses NUL bytes (ValueError)


def test_lint_part_is_one_minus_findings_per_non_blank_line():
    code = "import os, sys\n\n\ndef f(x):\n    y = 1\n    return x\n"
    parts = quality_parts(code, LevelSettings(security=False))
    # ruff E401 (multiple imports), F401 x2 (os, sys unused), F841 (y unused): 4 findings over 4 lines
    assert parts["lint"] == 0.0
    clean = "def f(x):\n    return x + 1\n"
    assert quality_parts(clean, LevelSettings(security=False))["lint"] == 1.0
    long_line = "def f(x):\n    return x + " + " + ".join(["1"] * 40) + "\n"  # E501 at 79 columns, once in 2 lines
    assert quality_parts(long_line, LevelSettings(security=False))["lint"] == 0.5


def test_complexity_maintainability_and_security_parts():
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(11))
    code = f"def f(x):\n{branches}    return -1\n"  # cyclomatic complexity 12
    parts = quality_parts(code, LevelSettings(security=False))
    assert parts["complexity"] == pytest.approx(10 / 12)
    assert quality_parts(code, LevelSettings(max_complexity=6, security=False))["complexity"] == pytest.approx(6 / 12)
    assert quality_parts(code, LevelSettings(max_complexity=12, security=False))["complexity"] == 1.0
    assert parts["maintain"] == pytest.approx(mi_visit(code, multi=True) / 100)
    assert "security" not in parts
    # bandit: B403 (import pickle, low: 1) and B301 (pickle.loads, medium: 2) -> 1 / (1 + 3)
    risky = "import pickle\n\n\ndef f(x):\n    return pickle.loads(x)\n"
    assert quality_parts(risky, LevelSettings())["security"] == pytest.approx(1 / 4)
    assert quality_parts("def f(x):\n    return x\n", LevelSettings())["security"] == 1.0


def test_quality_is_the_mean_of_its_parts_and_null_when_a_tool_fails(monkeypatch):
    code = "def f(x):\n    return x\n"
    result = _result(True)
    levels = program_levels(code, result, None, LevelSettings())
    parts = levels["parts"]["quality"]
    assert set(parts) == {"lint", "complexity", "maintain", "security"}
    assert levels["quality"] == pytest.approx(sum(parts.values()) / 4)

    def crash(*_args):
        raise RuntimeError("ruff exited 2: boom")

    monkeypatch.setattr(levels_module, "_ruff_findings", crash)
    broken = program_levels(code, result, None, LevelSettings())
    assert broken["quality"] is None and "boom" in broken["notes"]["quality"]
    assert broken["syntax"] == 1 and broken["tests"] == result.soft_pass  # the rest still measured
    unparsable = program_levels("def f(:", _result(False, executed=False), None, LevelSettings())
    assert unparsable["syntax"] == 0 and unparsable["quality"] is None and unparsable["execution"] == 0


def test_efficiency_formula():
    reference = ReferenceProfile(cpu_seconds=0.1, max_rss_bytes=100)
    settings = LevelSettings(time_floor=0.01)
    parts = efficiency_parts(_result(True, cpu=0.39, rss=200), reference, settings)
    assert parts["time"] == pytest.approx(0.11 / 0.40) and parts["memory"] == pytest.approx(0.5)
    faster = efficiency_parts(_result(True, cpu=0.01, rss=50), reference, settings)
    assert faster["time"] == 1.0 and faster["memory"] == 1.0  # capped: no bonus past the canonical solution
    levels = program_levels("def f(x):\n    return x\n", _result(True, cpu=0.39, rss=200), reference, settings)
    assert levels["efficiency"] == pytest.approx((0.11 / 0.40 + 0.5) / 2)
    # null: a failing program, no canonical solution, a canonical solution that fails, no kernel account
    assert efficiency_parts(_result(False), reference, settings) == {"reason": "fails a hidden test"}
    assert "reason" in efficiency_parts(_result(True), None, settings)
    assert "reason" in efficiency_parts(_result(True), ReferenceProfile(reason="fails"), settings)
    assert "reason" in efficiency_parts(_result(True, cpu=None), reference, settings)
    failed = program_levels("def f(x):\n    return 0\n", _result(False), reference, settings)
    assert failed["efficiency"] is None and failed["notes"]["efficiency"] == "fails a hidden test"


def test_multi_score_and_multi_reward():
    assert DEFAULT_WEIGHTS == {"syntax": 0.2, "execution": 0.3, "tests": 0.3, "quality": 0.1, "efficiency": 0.1}
    levels = {"syntax": 1, "execution": 1, "tests": 0.5, "quality": 0.8, "efficiency": None}
    assert multi_score(levels, DEFAULT_WEIGHTS) == pytest.approx(0.2 + 0.3 + 0.15 + 0.08)
    reward = RewardConfig(kind="multi")
    assert "0.2*syntax + 0.3*execution + 0.3*tests + 0.1*quality + 0.1*efficiency" in reward.formula()
    assert step_reward(reward, False, 0.5, 0.0, multi=0.73, previous_multi=0.5) == pytest.approx(0.23)
    custom = RewardConfig(kind="multi", weights={"tests": 1.0})
    assert custom.weights["syntax"] == 0.0 and multi_score(levels, custom.weights) == 0.5
    with pytest.raises(UserError, match="unknown level weight"):
        RewardConfig(kind="multi", weights={"speed": 1.0})
    with pytest.raises(UserError, match="max_complexity"):
        level_settings({"max_complexity": 0})
    with pytest.raises(UserError, match="unknown key"):
        level_settings({"max_complexty": 3})


def test_strategy_file_levels_section_reaches_the_reward():
    from promis_repro.strategies.config import parse_strategy_file

    parsed = parse_strategy_file({"reward": {"kind": "multi"}, "levels": {"max_complexity": 4, "security": False}})
    assert parsed.reward.kind == "multi" and parsed.reward.levels == LevelSettings(max_complexity=4, security=False)
    with pytest.raises(UserError, match=r"levels: .*security"):
        parse_strategy_file({"levels": {"security": "yes"}})


def test_execution_level_in_the_sandbox(data_dir):
    from promis_repro.data.registry import load_benchmark
    from promis_repro.evaluation.evaluator import evaluate_program

    task = load_benchmark("mbppplus", data_dir)[0]
    raising = "raise ValueError('at import')\n" + task.reference_solution
    for code, executed in ((task.reference_solution, True), (raising, False), ("import sys\nsys.exit(0)\n", False)):
        result = evaluate_program(task, code)
        assert result.executed is executed, code
        assert program_levels(code, result, None, LevelSettings())["execution"] == int(executed)
    assert evaluate_program(task, task.reference_solution).cpu_seconds > 0


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "promis_repro.cli", "--quiet", *args], check=True)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("benchmark, n_tasks", [("mbppplus", 40), ("humanevalplus", 20)])
def test_evaluate_levels_on_reference_solutions(data_dir, tmp_path, benchmark, n_tasks):
    """The reference solutions: syntax, execution and tests 1, efficiency near 1 (the first tasks; the
    whole benchmarks in bench/levels_cost.py)."""
    from promis_repro.data.registry import load_benchmark

    tasks = load_benchmark(benchmark, data_dir)[:n_tasks]
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(json.dumps({"task_id": t.task_id, "solution": t.reference_solution}) + "\n" for t in tasks)
    )
    _cli("evaluate", "--benchmark", benchmark, "--samples", str(samples), "--out", str(tmp_path / "out"),
         "--data-dir", str(data_dir), "--levels")  # fmt: skip
    rows = _rows(tmp_path / "out" / "results.jsonl")
    assert len(rows) == n_tasks
    for row in rows:
        levels = row["levels"]
        assert (levels["syntax"], levels["execution"], levels["tests"]) == (1, 1, 1.0), row["task_id"]
        assert levels["quality"] is not None and 0 < levels["quality"] <= 1
        assert levels["efficiency"] >= 0.7, (row["task_id"], levels["parts"]["efficiency"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["levels"]["efficiency"] >= 0.9 and summary["levels"]["n_efficiency"] == n_tasks
    assert summary["provenance"]["config"]["levels"]["max_complexity"] == 10


def test_slow_and_badly_styled_solutions_lose_levels_not_verdicts(data_dir, tmp_path):
    from promis_repro.data.registry import load_benchmark

    tasks = load_benchmark("mbppplus", data_dir)[:5]
    rows = []
    for task in tasks:
        variants = {
            "canonical": task.reference_solution,
            **correct_but_worse(task.reference_solution, task.entry_point),
        }
        rows += [{"task_id": task.task_id, "solution": code, "variant": name} for name, code in variants.items()]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, extra in (("plain", ()), ("levels", ("--levels",))):
        _cli("evaluate", "--benchmark", "mbppplus", "--samples", str(samples), "--out", str(tmp_path / name),
             "--data-dir", str(data_dir), *extra)  # fmt: skip
    plain, scored = _rows(tmp_path / "plain" / "results.jsonl"), _rows(tmp_path / "levels" / "results.jsonl")
    for before, after in zip(plain, scored, strict=True):
        assert "levels" not in before
        assert {k: before[k] for k in VERDICT_KEYS} == {k: after[k] for k in VERDICT_KEYS}  # no verdict changes
    by_variant: dict[str, list[dict]] = {}
    for row, sample in zip(scored, rows, strict=True):
        assert row["passed"], (sample["variant"], row["task_id"])
        by_variant.setdefault(sample["variant"], []).append(row["levels"])
    for canonical, slow, styled in zip(*(by_variant[v] for v in ("canonical", "slow", "badly_styled")), strict=True):
        assert slow["efficiency"] < canonical["efficiency"] - 0.2
        assert slow["parts"]["efficiency"]["time"] < 0.5
        assert styled["quality"] < canonical["quality"] - 0.1
        assert styled["parts"]["quality"]["security"] < 1.0 and styled["parts"]["quality"]["lint"] < 0.9


def test_grpo_reward_scores_code_by_softpass_or_by_its_multi_level_score(data_dir):
    from promis_repro.agent.grpo import code_scorer
    from promis_repro.data.pools import load_pool
    from promis_repro.strategies.feedback import training_suites

    task = load_pool("train_pool", data_dir)[0]
    wrong = "def nothing():\n    return None\n"
    shaped, multi = code_scorer(RewardConfig(), "visible"), code_scorer(RewardConfig(kind="multi"), "visible")
    suites: dict = {}
    assert shaped(suites, task, task.reference_solution) == 1.0 and shaped(suites, task, wrong) == 0.0
    reward = RewardConfig(kind="multi")
    expected = multi_score(training_suites(task, "visible")[1].evaluate(wrong, reward.levels).levels, reward.weights)
    suites = {}
    assert multi(suites, task, wrong) == pytest.approx(expected)
    assert multi(suites, task, task.reference_solution) > 0.9 and task.task_id in suites  # the suite is kept


def test_suppression_comments_do_not_switch_findings_off():
    code = "import os\nimport pickle\n\n\ndef f(x):\n    return pickle.loads(x)\n"
    silenced = "# ruff: noqa\nimport os  # noqa: F401\nimport pickle  # nosec\n\n\ndef f(x):\n"
    silenced += "    return pickle.loads(x)  # nosec\n"
    plain, quiet = quality_parts(code, LevelSettings()), quality_parts(silenced, LevelSettings())
    assert plain["lint"] < 1 and plain["security"] < 1
    assert quiet["security"] == plain["security"] and quiet["lint"] < 1


def test_top_level_scripts_have_their_complexity_measured():
    body = "".join(f"if n == {i}:\n    print({i})\n" for i in range(12))
    script = f"n = int(input())\n{body}"  # no function: a stdin/stdout program
    assert quality_parts(script, LevelSettings(security=False))["complexity"] == pytest.approx(10 / 13)
    spaced = "def f( x ):\n  y=x*2\n  return y\n"  # pycodestyle's whitespace and indentation rules count
    assert quality_parts(spaced, LevelSettings(security=False))["lint"] == 0.0


def test_a_missing_entry_point_still_executed_its_import(data_dir):
    from promis_repro.data.registry import load_benchmark
    from promis_repro.evaluation.evaluator import evaluate_program

    task = load_benchmark("mbppplus", data_dir)[0]
    renamed = task.reference_solution.replace(f"def {task.entry_point}(", "def renamed_function(")
    result = evaluate_program(task, renamed)
    assert result.status == "error" and not result.passed and result.executed  # the verdict stays an error


def test_quality_options_need_levels(tmp_path):
    from promis_repro.stages.evaluate import evaluate

    with pytest.raises(UserError, match="need --levels"):
        evaluate("mbppplus", tmp_path / "samples.jsonl", tmp_path / "out", max_complexity=5)
    with pytest.raises(UserError, match="need --levels"):
        evaluate("mbppplus", tmp_path / "samples.jsonl", tmp_path / "out", security=False)
