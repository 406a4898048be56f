"""Aggregation, significance tests, tables and figures on synthetic results with known answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_results import planted_tree, small_tree, write_cell

from promis_repro.analysis.aggregate import aggregate
from promis_repro.analysis.significance import compare_pair, holm, run_stats
from promis_repro.analysis.tables import make_tables
from promis_repro.analysis.tree import find_metrics
from promis_repro.errors import UserError

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"


def _analyse(root: Path, resamples: int = 2000) -> pd.DataFrame:
    aggregate(find_metrics(root), root / "aggregate")
    return run_stats(root, n_resamples=resamples)


def test_aggregate_gives_mean_spread_majority_and_cost(tmp_path):
    small_tree(tmp_path)
    cells = aggregate(find_metrics(tmp_path), tmp_path / "aggregate")
    ppo = cells[(cells.model == "codet5p-770m-py") & (cells.benchmark == "mbppplus") & (cells.strategy == "ppo")]
    row = ppo.iloc[0]
    # seed 1 solves 4/6, seed 2 3/6
    assert row.pass_at_1_mean == pytest.approx(3.5 / 6)
    assert row.pass_at_1_std == pytest.approx(np.std([4 / 6, 3 / 6], ddof=1))
    # tasks 0, 1, 2 pass in both seeds; task 3 in one of two: not a majority
    assert row.majority_pass_at_1 == pytest.approx(3 / 6)
    assert row.generator_calls_mean == pytest.approx((5 + 4) / 2)
    assert row.seeds == 2 and row.seed_list == "1 2" and row.n_tasks == 6
    per_task = pd.read_csv(tmp_path / "aggregate" / "per_task.csv", dtype={"task_id": str})
    assert set(per_task[per_task.benchmark == "apps"].difficulty) == {"introductory", "interview", "competition"}
    assert json.loads((tmp_path / "aggregate" / "cells.json").read_text())[0]["model"]
    assert (tmp_path / "aggregate" / "provenance.json").exists()


def test_aggregate_names_a_corrupt_row_and_keeps_earlier_outputs(tmp_path):
    small_tree(tmp_path)
    aggregate(find_metrics(tmp_path), tmp_path / "aggregate")
    before = (tmp_path / "aggregate" / "cells.csv").read_text()
    results = tmp_path / "codet5p-770m-py" / "mbppplus" / "ppo" / "seed1" / "results.jsonl"
    results.write_text(results.read_text() + '{"task_id": "Mbpp/9", "passed": tru\n')
    with pytest.raises(UserError, match=r"results.jsonl:7: malformed JSON row"):
        aggregate(find_metrics(tmp_path), tmp_path / "aggregate")
    assert (tmp_path / "aggregate" / "cells.csv").read_text() == before


def test_a_planted_difference_is_found(tmp_path):
    planted_tree(tmp_path)
    comparisons = _analyse(tmp_path).set_index("strategy")
    direct = comparisons.loc["direct"]
    assert direct.pass_diff == pytest.approx(0.55, abs=0.1)
    # the hierarchical interval carries the seeds' variance besides the tasks'
    assert 0.3 < direct.pass_ci_low < 0.55 < direct.pass_ci_high < 0.8
    assert direct.soft_ci_low > 0
    assert direct.significant_pass and direct.significant_soft and direct.p_pass_holm < 0.01
    assert direct.significant_mcnemar and direct.significant_wilcoxon
    assert direct.p_mcnemar_holm < 1e-6
    assert direct.seed_ci_low > 0 and direct.seeds_paired == 3


def test_a_null_difference_is_not_found(tmp_path):
    planted_tree(tmp_path)
    ga_only = _analyse(tmp_path).set_index("strategy").loc["ga_only"]
    assert not ga_only.significant_pass and not ga_only.significant_soft
    assert not ga_only.significant_mcnemar and not ga_only.significant_wilcoxon
    assert ga_only.pass_ci_low < 0 < ga_only.pass_ci_high
    assert ga_only.p_mcnemar_holm > 0.05
    assert 0 < ga_only.mdd_pass_tasks < 0.5


def test_false_positive_rate_under_the_null_is_near_alpha():
    # 40 replicates of 60 tasks x 3 seeds where both sides share every task's solve rate
    rng = np.random.default_rng(0)
    hits = {"p_mcnemar": 0, "p_wilcoxon": 0, "p_pass": 0, "p_soft": 0}
    for _ in range(40):
        rates = rng.uniform(0.3, 1.0, 60)
        sides = []
        for _side in range(2):
            rows = [
                {"task_id": t, "seed": s, "passed": float(p), "soft_pass": 1.0 if p else rng.uniform(0, 0.6)}
                for s in range(3)
                for t, p in enumerate(rng.random(60) < rates)
            ]
            sides.append(pd.DataFrame(rows))
        seeds = [side.groupby("seed")["passed"].mean() for side in sides]
        result = compare_pair(sides[0], sides[1], seeds[0], seeds[1], n_resamples=200)
        for key in hits:
            hits[key] += result[key] < 0.05
    assert all(count <= 5 for count in hits.values()), hits


def test_hierarchical_bootstrap_carries_the_variance_across_seeds():
    from promis_repro.analysis.bootstrap import hierarchical_bootstrap

    rng = np.random.default_rng(3)
    tasks = (rng.random(200) < 0.5).astype(float)
    steady = np.tile(tasks, (4, 1))  # every seed's agent solves the same tasks
    erratic = np.vstack([np.ones((2, 200)), np.zeros((2, 200))])  # two agents solve everything, two nothing
    wide = hierarchical_bootstrap(erratic, seed=1, n_resamples=2000)
    narrow = hierarchical_bootstrap(steady, seed=1, n_resamples=2000)
    assert wide.high - wide.low > 2 * (narrow.high - narrow.low)
    # a paper's number inside the interval is no significant difference; far outside it is
    assert hierarchical_bootstrap(steady, offset=narrow.estimate, seed=2, n_resamples=2000).p_value > 0.5
    assert hierarchical_bootstrap(steady, offset=narrow.estimate + 0.3, seed=2, n_resamples=2000).p_value < 0.01


def test_mcnemar_is_the_exact_binomial_test_on_discordant_tasks():
    tasks = [f"t{i}" for i in range(10)]
    reference = pd.DataFrame({"task_id": tasks, "passed": [1.0] * 8 + [0.0, 1.0], "soft_pass": 0.5})
    other = pd.DataFrame({"task_id": tasks, "passed": [0.0] * 9 + [1.0], "soft_pass": 0.5})
    result = compare_pair(reference, other, pd.Series([0.9]), pd.Series([0.1]), n_resamples=500)
    assert (result["only_reference"], result["only_other"]) == (8, 0)
    assert result["p_mcnemar"] == pytest.approx(2 * 0.5**8)
    assert result["p_wilcoxon"] == 1.0  # every SoftPass difference is zero
    assert result["soft_ci_low"] == result["soft_ci_high"] == 0.0
    assert np.isnan(result["seed_ci_low"])  # one seed: no interval


def test_holm_adjusts_in_the_order_of_the_p_values():
    adjusted = holm(pd.Series([0.01, 0.04, 0.03, 0.5]))
    # sorted: 0.01*4, 0.03*3, 0.04*2 -> monotone max, 0.5*1 -> at least the previous
    assert adjusted.tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_holm_family_is_one_table(tmp_path):
    planted_tree(tmp_path)
    write_cell(tmp_path, "codellama-7b-instruct", "humanevalplus", "ppo", 1, [("HumanEval/0", True, 1.0)])
    write_cell(tmp_path, "codellama-7b-instruct", "humanevalplus", "direct", 1, [("HumanEval/0", False, 0.0)])
    comparisons = _analyse(tmp_path)
    mbpp = comparisons[comparisons.benchmark == "mbppplus"]
    humaneval = comparisons[comparisons.benchmark == "humanevalplus"]
    assert len(mbpp) == 2 and len(humaneval) == 1
    assert humaneval.p_mcnemar_holm.iloc[0] == humaneval.p_mcnemar.iloc[0]  # a family of one
    assert (mbpp.p_mcnemar_holm >= mbpp.p_mcnemar).all()


@pytest.mark.parametrize("name", ["mbppplus_visible", "apps_visible", "apps_difficulty_visible", "paper_vs_reproduced"])
def test_tables_match_golden_files(tmp_path, name):
    small_tree(tmp_path)
    _analyse(tmp_path)
    names = make_tables(tmp_path, paper=REPO / "config" / "paper_results.yaml")
    assert name in names
    for suffix in ("md", "tex"):
        produced = (tmp_path / "tables" / f"{name}.{suffix}").read_text()
        golden = GOLDEN / f"{name}.{suffix}"
        if os.environ.get("PROMIS_REPRO_UPDATE_GOLDEN"):
            golden.write_text(produced)
        assert produced == golden.read_text(), f"{name}.{suffix} differs from {golden}"
    assert pd.read_csv(tmp_path / "tables" / f"{name}.csv").shape[0] > 0


def test_tables_are_the_ones_the_pipeline_names_in_advance(tmp_path):
    from promis_repro.grid import table_names

    small_tree(tmp_path)
    _analyse(tmp_path)
    names = make_tables(tmp_path, paper=REPO / "config" / "paper_results.yaml")
    assert sorted(names) == sorted(table_names(["mbppplus", "apps"], ["visible"]))
    for name in names:
        for suffix in ("md", "tex", "csv", "html"):
            assert (tmp_path / "tables" / f"{name}.{suffix}").stat().st_size > 0
    page = (tmp_path / "tables" / "mbppplus_visible.html").read_text()
    assert page.count("<tr>") == 1 + 3 and "<b>" in page and "Feedback: visible" in page


def test_apps_difficulty_table_exists_without_recorded_difficulties(tmp_path):
    small_tree(tmp_path)
    for path in tmp_path.glob("*/apps/*/seed*/results.jsonl"):
        rows = [json.loads(line) | {"difficulty": None} for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    _analyse(tmp_path)
    assert "apps_difficulty_visible" in make_tables(tmp_path)
    text = (tmp_path / "tables" / "apps_difficulty_visible.md").read_text()
    assert "No results.jsonl row carries an APPS difficulty" in text


def test_significance_marks_in_a_golden_table(tmp_path):
    planted_tree(tmp_path)
    _analyse(tmp_path)
    make_tables(tmp_path)
    produced = (tmp_path / "tables" / "mbppplus_visible.md").read_text()
    golden = GOLDEN / "planted_mbppplus_visible.md"
    if os.environ.get("PROMIS_REPRO_UPDATE_GOLDEN"):
        golden.write_text(produced)
    assert produced == golden.read_text()
    direct = next(line for line in produced.splitlines() if line.startswith("| Direct"))
    ga_only = next(line for line in produced.splitlines() if line.startswith("| GA only"))
    assert "†" in direct and "‡" in direct and "†" not in ga_only and "‡" not in ga_only


def test_paper_results_file_is_checked(tmp_path):
    small_tree(tmp_path)
    _analyse(tmp_path)
    bad = tmp_path / "paper.yaml"
    bad.write_text(
        "sources: {x: y}\nresults:\n  - {model: m, benchmark: mbppplus, strategy: ppo, pass_at_1: 150, source: x}\n"
    )
    with pytest.raises(UserError, match=r"results\[0\]: pass_at_1 must be a percentage"):
        make_tables(tmp_path, paper=bad)


def test_oracle_runs_are_labelled_leaky(tmp_path):
    small_tree(tmp_path)
    write_cell(tmp_path, "codet5p-770m-py", "mbppplus", "ppo", 1, [("Mbpp/0", True, 1.0)], feedback="oracle")
    _analyse(tmp_path)
    make_tables(tmp_path)
    oracle = (tmp_path / "tables" / "mbppplus_oracle.md").read_text()
    assert "(LEAKY)" in oracle and "LEAKY: the hidden tests" in oracle
    assert "LEAKY" not in (tmp_path / "tables" / "mbppplus_visible.md").read_text()


def test_figures_render_without_a_display(tmp_path):
    small_tree(tmp_path)
    curves = tmp_path / "agents" / "ppo" / "codet5p-770m-py" / "seed1" / "curves.csv"
    curves.parent.mkdir(parents=True)
    curves.write_text(
        "episode,task_id,return,length,passed,best_soft,action_0,action_1,action_2,mean_return_20,pass_rate_20\n"
        "0,601,-0.1,2,False,0.0,1,1,0,-0.1,0.0\n1,602,1.0,1,True,1.0,0,0,1,0.45,0.5\n"
    )
    trajectory = tmp_path / "codet5p-770m-py" / "mbppplus" / "ppo" / "seed1" / "trajectories.jsonl"
    trajectory.write_text("".join(json.dumps({"step": s, "action": a}) + "\n" for s, a in [(0, 0), (1, 2), (0, 1)]))
    aggregate(find_metrics(tmp_path), tmp_path / "aggregate")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    done = subprocess.run(
        [sys.executable, "-m", "promis_repro.cli", "figures", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    from promis_repro.grid import FIGURES

    for name in FIGURES:
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_commands_need_their_inputs_and_say_which(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "promis_repro.cli", "stats", "--results", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "per_task.csv: missing" in lines[0]


def test_provenance_appendix_lists_what_produced_the_numbers(tmp_path):
    from promis_repro.analysis.provenance_report import write_provenance_report

    small_tree(tmp_path)
    page = write_provenance_report(tmp_path).read_text()
    assert "hub/codet5p-770m-py@main" in page and "0" * 40 in page and "ab" * 32 in page


def test_no_spread_gives_no_minimum_detectable_difference(tmp_path):
    """Every strategy fails every task (the tiny model's usual outcome): the MDD formula would say 0 pp,
    i.e. any difference detectable; the table must say it is undefined instead."""
    for strategy in ("ppo", "direct"):
        for seed in (1, 2):
            write_cell(tmp_path, "m", "mbppplus", strategy, seed, [("Mbpp/2", False, 0.0), ("Mbpp/3", False, 0.5)])
    comparisons = _analyse(tmp_path, resamples=200)
    assert comparisons[["mdd_pass_tasks", "mdd_pass_seeds"]].isna().all().all()
    make_tables(tmp_path)
    text = (tmp_path / "tables" / "mbppplus_visible.md").read_text()
    assert "undefined, the Pass@1 differences have no spread" in text and "over the seeds 0.0 pp" not in text
