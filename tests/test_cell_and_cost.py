"""The reviewer's cell (one cell's row of the tables, without the rest of the grid) and the bill before the run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, job_counts, run_snakemake
from synthetic_results import small_tree

from promis_repro import grid
from promis_repro.analysis.aggregate import aggregate
from promis_repro.analysis.cost import estimate, grid_jobs, job_seconds, load_config, recorded_benchmarks, recorded_runs
from promis_repro.analysis.cost_render import render
from promis_repro.analysis.cost_table import TableModel, load_table
from promis_repro.analysis.significance import run_stats
from promis_repro.analysis.tables import make_tables
from promis_repro.analysis.tree import find_metrics
from promis_repro.cli import main
from promis_repro.errors import UserError
from promis_repro.stages.cell import cell
from promis_repro.stages.cost import cost

PAPER = REPO / "config" / "paper_results.yaml"
TABLE = REPO / "config" / "cost_table.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TINY_MODEL = "smollm2-135m-instruct"
EVERY = "config/tiny-every-strategy.yaml"  # every strategy and benchmark, the shortest generations
RESAMPLES = 2000


# --- the reviewer's cell -------------------------------------------------------------------------------


@pytest.fixture
def analysed_tree(tmp_path: Path) -> Path:
    """The synthetic tree of the golden tables, through aggregate, stats and tables as the pipeline runs them."""
    small_tree(tmp_path)
    aggregate(find_metrics(tmp_path), tmp_path / "aggregate")
    run_stats(tmp_path, n_resamples=RESAMPLES)
    make_tables(tmp_path, paper=PAPER)
    return tmp_path


def _one_cell(root: Path, model: str, strategy: str, benchmark: str = "mbppplus") -> pd.Series:
    path = cell(
        root,
        model,
        benchmark,
        strategy,
        seeds=["1", "2"],
        paper=PAPER,
        strategies=["direct", "epic", "ppo"],
        models=["codet5p-770m-py", "codellama-7b-instruct"],
        resamples=RESAMPLES,
    )
    frame = pd.read_csv(path)
    assert len(frame) == 1  # the cell's row and nothing else
    return frame.iloc[0]


def test_the_cell_row_has_the_full_tables_numbers(analysed_tree):
    root = analysed_tree
    cells = pd.read_csv(root / "aggregate" / "cells.csv")
    paper = pd.read_csv(root / "tables" / "paper_vs_reproduced.csv")
    comparisons = pd.read_csv(root / "stats" / "comparisons.csv")

    # ppo on MBPP+ with CodeLlama: the paper reports it (the abstract), so mean ± SD, paper and CI
    row = _one_cell(root, "codellama-7b-instruct", "ppo")
    full = cells[(cells.model == "codellama-7b-instruct") & (cells.benchmark == "mbppplus") & (cells.strategy == "ppo")]
    for metric in ("pass_at_1", "soft_pass_at_1"):
        assert row[f"{metric}_mean"] == pytest.approx(full[f"{metric}_mean"].iloc[0])
        assert row[f"{metric}_std"] == pytest.approx(full[f"{metric}_std"].iloc[0])
        theirs = paper[(paper.model == "codellama-7b-instruct") & (paper.benchmark == "mbppplus")]
        theirs = theirs[(theirs.strategy == "ppo") & (theirs.metric == metric)].iloc[0]
        assert row[f"paper_{metric}"] == pytest.approx(theirs["paper"])
        assert row[f"{metric}_minus_paper"] == pytest.approx(theirs["diff"])
        assert row[f"{metric}_minus_paper_ci_low"] == pytest.approx(theirs["diff_ci_low"])
        assert row[f"{metric}_minus_paper_ci_high"] == pytest.approx(theirs["diff_ci_high"])
    assert "p_pass" not in row  # the reference itself: no test

    # epic: not in the paper's MBPP+ numbers; its test against ppo is stats's, before Holm
    row = _one_cell(root, "codellama-7b-instruct", "epic")
    theirs = comparisons[(comparisons.model == "codellama-7b-instruct") & (comparisons.benchmark == "mbppplus")]
    theirs = theirs[theirs.strategy == "epic"].iloc[0]
    for column in ("pass_diff", "pass_ci_low", "pass_ci_high", "p_pass", "soft_diff", "p_soft", "p_mcnemar"):
        assert row[column] == pytest.approx(theirs[column]), column
    assert pd.isna(row["paper_pass_at_1"])
    assert row["holm_family"] == 4  # 2 generators x (direct, epic) in the MBPP+ table
    for test in ("pass", "soft"):
        assert row[f"p_{test}"] <= theirs[f"p_{test}_holm"] + 1e-9 <= row[f"p_{test}_bonferroni"] + 2e-9

    page = (root / "cells" / "codellama-7b-instruct" / "mbppplus" / "epic.md").read_text()
    body = [line for line in page.splitlines() if line.startswith("| codellama")]
    assert len(body) == 1 and "EPiC" in body[0] and "not reported" in body[0]
    assert (root / "cells" / "codellama-7b-instruct" / "mbppplus" / "epic.provenance.json").exists()


def test_the_cell_command_names_what_is_missing(tmp_path, capsys):
    small_tree(tmp_path)
    code = main(["cell", "--results", str(tmp_path), "--model", "codet5p-770m-py", "--benchmark", "mbppplus",
                 "--strategy", "epic", "--seeds", "1", "2", "3"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "epic/seed3/metrics.json: missing" in error and "snakemake" in error


def test_the_one_cell_target_plans_that_cell_and_the_references_seeds_only(tmp_path):
    results = tmp_path / "results"
    for strategy, runs, trainings in (("direct", 4, 2), ("ppo", 2, 2), ("direct-oracle", 4, 2), ("lpo", 4, 4)):
        target = f"{results}/cells/{TINY_MODEL}/mbppplus/{strategy}.csv"
        # one job per cell (group_cells, the tiny default, would run the cell's whole group: test_group.py)
        config = [f"results={results}", "group_cells=false", "seeds=[1, 2]"]
        config += ["oracle_variant=true"] if "oracle" in strategy else []
        done = run_snakemake("-n", target, "--configfile", EVERY, "--config", *config, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        counts = job_counts(done.stdout + done.stderr)
        assert counts["run_cell"] == counts["evaluate_cell"] == runs, strategy
        assert counts["train_agent"] == trainings, strategy
        assert counts["cell_row"] == 1 and "aggregate" not in counts and "tables" not in counts
        text = done.stdout + done.stderr
        assert "mbppplus/ppo" in text and "/mbpp/" not in text and "humanevalplus" not in text.split("Job stats")[0]
    # an oracle twin the grid does not run: no rule for it, not an input function's traceback
    target = f"{results}/cells/{TINY_MODEL}/mbppplus/direct-oracle.csv"
    done = run_snakemake("-n", target, "--configfile", EVERY, "--config", f"results={results}")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "No rule to produce" in output and "Traceback" not in output


@pytest.mark.slow
def test_the_reviewers_command_on_the_tiny_config_builds_that_cell_and_nothing_else(tmp_path, data_dir):
    results = tmp_path / "results"
    target = f"{results}/cells/{TINY_MODEL}/mbpp/direct.md"
    # data_dir as the checkout's CI passes it (tiny.yaml's ../shared/data holds only beside /work/main)
    config = [f"results={results}", f"data_dir={data_dir}", "group_cells=false", "seeds=[1, 2]"]
    # the every-strategy config's short generations: the same rules and files, a fraction of the time
    done = run_snakemake(target, "--configfile", EVERY, "--config", *config, "-c2", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = sorted(str(p.relative_to(results)) for p in results.glob(f"{grid.cell_glob()}/metrics.json"))
    assert ran == [f"{TINY_MODEL}/mbpp/{s}/seed{n}/metrics.json" for s in ("direct", "ppo") for n in (1, 2)]
    assert sorted(p.name for p in (results / "agents").iterdir()) == ["ppo"]
    assert not any((results / name).exists() for name in ("aggregate", "stats", "tables", "figures", "report"))
    rows = pd.read_csv(results / "cells" / TINY_MODEL / "mbpp" / "direct.csv")
    assert len(rows) == 1 and rows.loc[0, "strategy"] == "direct" and rows.loc[0, "seed_list"] == "1 2"
    assert rows.loc[0, "reference"] == "ppo" and 0 <= rows.loc[0, "p_pass"] <= 1
    assert sorted(p.name for p in (results / "cells").rglob("*") if p.is_file()) == [
        "direct.csv",
        "direct.md",
        "direct.provenance.json",
    ]


# --- the bill before the run ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "configfile", ["config/tiny.yaml", "config/tiny-every-strategy.yaml", "config/config.yaml", "config/cpu-study.yaml"]
)
def test_job_counts_are_snakemakes(tmp_path, configfile):
    config = load_config([REPO / configfile], SCHEMA)
    config["results"] = str(tmp_path / "results")
    ours = {rule: len(jobs) for rule, jobs in grid_jobs(config).items()}
    done = run_snakemake(
        "-n", "--forceall", "--configfile", configfile, "--config", f"results={config['results']}", timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = job_counts(done.stdout + done.stderr)
    assert theirs.pop("all") == 1 and theirs.pop("total") == sum(ours.values()) + 1
    assert theirs == ours


def _tiny(tmp_path: Path) -> dict:
    """A tiny grid of every strategy and benchmark (13 x 4 x 2 seeds), 2 tasks a cell."""
    config = load_config([REPO / EVERY], SCHEMA)
    config["results"], config["limit"], config["seeds"] = str(tmp_path), 2, [1, 2]
    return config


def _record_run(root: Path, config: dict, strategy: str, seed: int, wall: float, settings: dict | None = None) -> None:
    from promis_repro.strategies.config import parse_strategy_file

    cell_dir = grid.cell_dir(root, TINY_MODEL, "mbppplus", strategy, seed)
    cell_dir.mkdir(parents=True)
    strategy_config = settings or parse_strategy_file(config["strategy"]).config.as_dict()
    cost = {
        "strategy": strategy,
        "benchmark": "mbppplus",
        "n_tasks": 2,
        "wall_seconds": wall,
        "totals": {"model_seconds": 1.0},
        "provenance": {"config": {"model": TINY_MODEL, "strategy_config": strategy_config}},
    }
    (cell_dir / "cost.json").write_text(json.dumps(cost))


def _by_rule(bill: dict) -> dict:
    return {r["rule"]: r for r in bill["rules"]}


def test_the_bill_uses_recorded_costs_where_they_exist_and_the_table_elsewhere(tmp_path):
    config, table = _tiny(tmp_path), load_table(TABLE)
    before = _by_rule(estimate(config, table))
    assert before["run_cell"]["sources"] == {"table": 104}
    assert before["run_cell"]["to_run"] == 104 and before["run_cell"]["gpus"] == 0  # the tiny grid: CPU only

    _record_run(tmp_path, config, "direct", 1, wall=30.0)
    _record_run(tmp_path, config, "direct", 2, wall=50.0)  # 20 s per task on average
    _record_run(tmp_path, config, "ga_once", 1, wall=99.0, settings={"max_generator_calls": 7})  # other settings
    agent = tmp_path / grid.agent_path("ppo", TINY_MODEL, 1)
    agent.mkdir(parents=True)
    from promis_repro.strategies.config import parse_strategy_file

    training = {
        "timesteps": config["train"]["ppo_timesteps"],
        "provenance": {
            "config": {
                "strategy_config": parse_strategy_file(config["strategy"]).config.as_dict(),
                "limit": config["train"]["limit"],
                "selection_limit": config["train"]["selection_limit"],
            }
        },
    }
    (agent / "training.json").write_text(json.dumps(training))
    tsv = tmp_path / grid.BENCHMARK_TEMPLATES["train_agent"].format(agent="ppo", model=TINY_MODEL, seed=1)
    tsv.parent.mkdir(parents=True)
    tsv.write_text("s\th:m:s\tmax_rss\n1234.5\t0:20:34\t800\n")

    after = _by_rule(estimate(config, table))
    assert after["run_cell"]["sources"] == {"cost.json": 2, "table": 102}  # the two direct mbppplus jobs
    assert after["train_agent"]["sources"] == {"benchmark": 2, "table": 6}  # ppo's seeds: 1234.5 s each
    assert after["run_cell"]["to_run"] == 104 and after["train_agent"]["to_run"] == 7

    jobs = {(j.key["strategy"], j.key["benchmark"], j.key["seed"]): j for j in grid_jobs(config)["run_cell"]}
    model = TableModel(table, config)
    runs, benchmarks = recorded_runs(tmp_path, config), recorded_benchmarks(tmp_path, config)
    seconds, source = job_seconds(jobs[("direct", "mbppplus", "1")], model, runs, benchmarks)
    startup = table["overhead_seconds"]["run_cell"] + table["models"][TINY_MODEL]["load_seconds"]
    assert source == "cost.json" and seconds == pytest.approx(startup + 20.0 * 2)  # 2 tasks (limit)
    seconds, source = job_seconds(jobs[("ga_once", "mbppplus", "1")], model, runs, benchmarks)
    assert source == "table" and seconds == pytest.approx(model.run_cell(jobs[("ga_once", "mbppplus", "1")]))
    trained = [j for j in grid_jobs(config)["train_agent"] if j.key["agent"] == "ppo"]
    assert job_seconds(trained[1], model, runs, benchmarks) == (1234.5, "benchmark")


def test_the_table_estimate_of_the_paper_grid(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the default files are the checkout's, where Snakemake runs
    out = tmp_path / "bill.json"
    code = main(["cost", "--configfile", "config/config.yaml", "--results", str(tmp_path / "none"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "run_cell" in printed and "GPU-h" in printed and "ESTIMATES" in printed
    bill = json.loads(out.read_text())
    rules = _by_rule(bill)
    # self_correct_rl (it fine-tunes the generator) not with the seq2seq CodeT5+: as the Snakefile plans it
    assert rules["run_cell"]["jobs"] == rules["run_cell"]["to_run"] == 3 * 4 * 13 * 5 - 4 * 5
    assert rules["train_agent"]["jobs"] == 3 * 3 * 5 + 2 * 5 and rules["train_agent"]["gpus"] == 1
    assert rules["evaluate_cell"]["gpus"] == 0 and rules["evaluate_cell"]["gpu_hours"] == 0
    assert bill["totals"]["gpu_jobs"] == 760 + 55
    gpu_rules = rules["run_cell"]["job_hours"] + rules["train_agent"]["job_hours"]
    assert bill["totals"]["gpu_hours"] == pytest.approx(gpu_rules)
    assert all(r["sources"] == {"table": r["jobs"]} for r in bill["rules"])
    # one job from the table's formula: CodeLlama, Direct on the 500 MBPP test tasks
    table = yaml.safe_load(TABLE.read_text())
    config = load_config([REPO / "config" / "config.yaml"], SCHEMA)
    job = next(j for j in grid_jobs(config)["run_cell"] if j.key["model"] == "codellama-7b-instruct"
               and j.key["benchmark"] == "mbpp" and j.key["strategy"] == "direct")  # fmt: skip
    llama = table["models"]["codellama-7b-instruct"]
    expected = table["overhead_seconds"]["run_cell"] + llama["load_seconds"]
    expected += 500 * (llama["call_seconds"] + table["test_seconds"])
    assert TableModel(table, config).run_cell(job) == pytest.approx(expected)


def test_the_snakefiles_localrules_are_grids_and_billed_as_local(tmp_path):
    # Snakemake's `localrules:` takes rule names only (not `*grid.LOCAL_RULES`): the Snakefile spells them out
    block = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", (REPO / "Snakefile").read_text(), re.MULTILINE)
    assert block is not None
    assert tuple(re.findall(r"\w+", block.group(1))) == grid.LOCAL_RULES

    bill = estimate(_tiny(tmp_path), load_table(TABLE))
    rules = _by_rule(bill)
    local = rules["strategy_config"]
    assert local["local"] and local["jobs"] == 1 and local["cpus"] == local["gpus"] == 0
    assert local["cpu_hours"] == local["cpu_hours_to_run"] == local["gpu_hours"] == 0
    assert [r["rule"] for r in bill["rules"] if r["local"]] == ["strategy_config"]  # `all` is not a job of the bill
    assert bill["totals"]["local_jobs"] == 1 and bill["totals"]["cluster_jobs"] == bill["totals"]["jobs"] - 1
    text = render({"table": str(TABLE), **bill})
    assert "local (no cluster job)" in text and "not billed): strategy_config" in text


def test_the_grid_wide_stages_scale_with_the_grid(tmp_path):
    table = load_table(TABLE)
    tiny = _by_rule(estimate(_tiny(tmp_path), table))
    paper_config = load_config([REPO / "config" / "config.yaml"], SCHEMA)
    paper = _by_rule(estimate(paper_config, table, results=tmp_path / "none"))
    model = TableModel(table, _tiny(tmp_path))
    assert model.task_results() == 104 * 2  # 13 strategies x 4 benchmarks x 2 seeds, 2 tasks each
    # 3 generators x 13 strategies, less CodeT5+'s self_correct_rl
    assert TableModel(table, paper_config).task_results() == (3 * 13 - 1) * 5 * (500 + 378 + 164 + 5000)
    for rule in ("aggregate", "stats", "tables", "figures", "provenance", "leakage_audit"):
        seconds = table["grid_seconds"][rule]
        assert tiny[rule]["job_hours"] * 3600 == pytest.approx(
            seconds["base_seconds"] + 208 * seconds["seconds_per_task_result"]
        )
        assert tiny[rule]["job_hours"] * 3600 < 30 < paper[rule]["job_hours"] * 3600
    # data_split embeds whole benchmarks (the local APPS subset with the tiny config's data_dir) and the pools
    split = table["data_split"]
    embedded = 500 + 378 + 164 + 128 + 374 + 90
    assert tiny["data_split"]["job_hours"] * 3600 == pytest.approx(
        split["base_seconds"] + embedded * split["seconds_per_task"]
    )
    assert tiny["data_split"]["job_hours"] < paper["data_split"]["job_hours"]


def test_recorded_cell_benchmarks_are_read_from_the_rules_template(tmp_path):
    config = _tiny(tmp_path)
    config["oracle_variant"] = True
    from promis_repro.strategies.config import parse_strategy_file

    settings = parse_strategy_file(config["strategy"]).config.as_dict()
    for variant in ("", grid.ORACLE_VARIANT):
        key = {"model": TINY_MODEL, "benchmark": "mbppplus", "strategy": "direct", "variant": variant, "seed": 1}
        cell = tmp_path / grid.cell_path(**key)
        cell.mkdir(parents=True)
        cost = {"n_tasks": 2, "provenance": {"config": {"model": TINY_MODEL, "strategy_config": settings}}}
        (cell / "cost.json").write_text(json.dumps(cost))
        tsv = tmp_path / grid.BENCHMARK_TEMPLATES["evaluate_cell"].format(**key)
        tsv.parent.mkdir(parents=True)
        tsv.write_text(f"s\th:m:s\n{8.0 if variant else 4.0}\t0:00:04\n")
    fetched = tmp_path / grid.BENCHMARK_TEMPLATES["fetch_model"].format(model=TINY_MODEL)
    fetched.parent.mkdir(parents=True)
    fetched.write_text("s\n12.5\n")
    found = recorded_benchmarks(tmp_path, config)
    assert found == {
        ("evaluate_cell", TINY_MODEL, "mbppplus", "direct"): [2.0, 4.0],  # seconds per task, both variants
        ("fetch_model", TINY_MODEL): [12.5],
    }
    rules = _by_rule(estimate(config, load_table(TABLE)))
    assert rules["evaluate_cell"]["sources"]["benchmark"] == 4  # direct on mbppplus: 2 seeds x 2 variants
    assert rules["fetch_model"]["sources"] == {"benchmark": 1}


def test_the_default_files_are_the_working_directorys(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not a project checkout
    assert main(["cost"]) == 2
    assert "config/config.yaml: no such config file" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"^workflow/schemas/config\.schema\.yaml: no such config schema"):
        cost([str(REPO / "config" / "tiny.yaml")], table=TABLE)
    monkeypatch.chdir(REPO)
    with pytest.raises(UserError, match=r"nowhere\.yaml: no such cost table"):
        cost(["config/tiny.yaml"], table=tmp_path / "nowhere.yaml")
