"""The Snakemake workflow as text and as a DAG: lint, the full grid's dry run, config validation, containers."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, job_counts, run_snakemake


def test_lint_is_clean():
    done = run_snakemake("--lint", "--configfile", "config/tiny.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations" in done.stdout + done.stderr


def test_rules_are_snakefmt_formatted():
    done = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_dry_run_of_the_paper_grid_lists_every_cell():
    done = run_snakemake("-n")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout + done.stderr)
    # 3 generators x 4 benchmarks (the MBPP test split, MBPP+, HumanEval+, APPS) x 13 strategies x 5 seeds, but
    # self_correct_rl, which fine-tunes the generator, not with the seq2seq CodeT5+
    assert counts["evaluate_cell"] == 3 * 4 * 13 * 5 - 4 * 5
    assert counts["run_cell"] == 3 * 4 * 13 * 5 - 4 * 5
    # ppo, lpo, rl_rewriter per generator and seed; self_correct_rl per generator it can fine-tune
    assert counts["train_agent"] == 3 * 3 * 5 + 2 * 5
    for stage in ("aggregate", "stats", "tables", "figures", "provenance", "leakage_audit"):
        assert counts[stage] == 1, stage
    text = done.stdout + done.stderr
    assert "results/codellama-7b-instruct/mbpp/ppo/seed1/metrics.json" in text
    assert "results/codellama-7b-instruct/mbppplus/ppo/seed1/metrics.json" in text
    assert "results/agents/ppo/codellama-7b-instruct/seed5/training.json" in text
    assert "results/agents/self_correct_rl/deepseek-coder-6.7b-instruct/seed5/training.json" in text
    assert "results/codellama-7b-instruct/apps/self_correct_rl/seed1/metrics.json" in text
    assert "codet5p-770m-py/mbpp/self_correct_rl" not in text and "self_correct_rl/codet5p-770m-py" not in text


def test_one_cell_needs_only_its_own_inputs():
    target = "results/codellama-7b-instruct/mbppplus/ppo/seed1/metrics.json"
    done = run_snakemake("-n", target)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout + done.stderr)
    assert counts == {
        "data_split": 1,
        "evaluate_cell": 1,
        "fetch_model": 2,
        "run_cell": 1,
        "strategy_config": 1,
        "total": 7,
        "train_agent": 1,
    }


def test_config_on_the_command_line_adds_to_the_paper_grid():
    # --config without --configfile keeps the paper's grid and changes only the keys it names
    done = run_snakemake("-n", "--config", "seeds=[2]", "strategies=[direct]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout + done.stderr)["evaluate_cell"] == 3 * 4 * 1 * 1
    assert "results/deepseek-coder-6.7b-instruct/apps/direct/seed2/metrics.json" in done.stdout + done.stderr


IN_APPTAINER = ("--software-deployment-method", "apptainer", "--cores", "1")


@pytest.mark.parametrize("chosen", [None, "/images/promis-repro-test.sif"])
def test_the_container_key_points_the_rules_at_an_image(tmp_path, chosen, apptainer_stand_in):
    # a real run of one rule "in Apptainer": the stand-in records the image Snakemake hands it
    results = tmp_path / "results"
    config = ["--config", f"results={results}", *([f"container={chosen}"] if chosen else [])]
    done = subprocess.run(
        [*SNAKEMAKE, f"{results}/config/strategy.yaml", "--configfile", "config/tiny.yaml", *config, *IN_APPTAINER],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=apptainer_stand_in,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (results / "config" / "strategy.yaml").exists()
    (call,) = Path(apptainer_stand_in["APPTAINER_CALLS"]).read_text().splitlines()
    assert call.startswith("exec ") and f" {chosen or 'promis-repro.sif'} bash " in call


def test_oracle_variant_adds_labelled_cells(tmp_path):
    config = yaml.safe_load((REPO / "config" / "tiny-every-strategy.yaml").read_text())
    config["oracle_variant"] = True
    config["results"] = str(tmp_path / "results")  # an empty tree: cells a tiny run left behind are not planned
    path = tmp_path / "oracle.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_snakemake("-n", "--configfile", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout + done.stderr)["evaluate_cell"] == 2 * 4 * 13 * 1
    assert "--feedback oracle" in done.stdout + done.stderr or "direct-oracle/seed1" in done.stdout + done.stderr
    for table in ("mbppplus_oracle", "apps_difficulty_oracle", "mbppplus_visible"):
        assert f"tables/{table}.html" in done.stdout + done.stderr, table


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("seeds", "five", "seeds"),
        ("feedback", "hidden", "feedback"),
        ("strategies", ["direct", "best"], "strategies"),
        ("limit", 0, "limit"),
        ("limit", {"mbpp": 5, "humaneval": 3}, "humaneval"),
        ("generators", ["gpt-9"], "gpt-9"),
        ("rewriter", "all-minilm-l6-v2", "embedder"),
        ("strategy", {"max_steps": 0}, "max_steps"),
        ("strategy", {"reward": {"kind": "dense"}}, "reward"),
        ("strategy", {"ppo": {"nsteps": 3}}, "nsteps"),
        ("strategy", {"self_correct_rl": {"beta1": -1.0}}, "beta1"),
    ],
)
def test_a_bad_config_stops_with_one_line_naming_the_key(tmp_path, key, value, named):
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_snakemake("-n", "--configfile", str(path))
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("promis-repro: invalid config:"), done.stderr
    assert named in lines[0] and key in lines[0]


@pytest.mark.parametrize("group_cells", [False, True])
def test_a_limit_per_benchmark_reaches_only_that_benchmarks_jobs(tmp_path, group_cells):
    """config/cpu-study.yaml: its first N MBPP test tasks (`limit`), every HumanEval+ task; per cell or per group."""
    mbpp_limit = yaml.safe_load((REPO / "config" / "cpu-study.yaml").read_text())["limit"]["mbpp"]
    done = run_snakemake(
        "-n",
        "-p",
        "--forceall",
        "--configfile",
        "config/cpu-study.yaml",
        "--config",
        f"results={tmp_path}",
        f"group_cells={str(group_cells).lower()}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # a group job runs "run-group --strategies ...", a cell job "run --strategy ..."
    verb = " run-group " if group_cells else "--strategy "
    commands = [line for line in (done.stdout + done.stderr).splitlines() if verb in line]
    mbpp = [line for line in commands if "--benchmark mbpp " in line]
    humaneval = [line for line in commands if "--benchmark humanevalplus " in line]
    assert mbpp and humaneval and len(mbpp) + len(humaneval) == len(commands)
    assert all(f"--limit {mbpp_limit} " in line for line in mbpp) and not any("--limit" in line for line in humaneval)


def test_command_line_values_of_a_key_with_several_shapes_are_typed():
    """Snakemake hands ``--config`` maps' items over as strings; ``limit`` may be null, a number or a map."""
    from promis_repro.workflow_config import load_schema, typed_command_line_values

    schema = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    assert typed_command_line_values({"limit": "null"}, schema) == {"limit": None}
    assert typed_command_line_values({"limit": "5"}, schema) == {"limit": 5}
    assert typed_command_line_values({"limit": {"mbpp": "40"}}, schema) == {"limit": {"mbpp": 40}}


def test_unknown_config_key_is_refused(tmp_path):
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["sedes"] = [1]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_snakemake("-n", "--configfile", str(path))
    assert done.returncode != 0 and "'sedes' was unexpected" in done.stderr


def test_the_image_pins_its_base_and_torch_and_installs_the_lock():
    dockerfile = (REPO / "containers" / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=\S+@sha256:[0-9a-f]{64}$", dockerfile, re.M), "the default base is pinned by digest"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    torch = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    assert f"ARG TORCH_SPEC={torch}" in dockerfile
    assert "requirements.lock" in dockerfile and "wordnet-base" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "results", ".snakemake", ".git"} <= set(ignored)


def test_the_lock_satisfies_pyproject():
    """containers/requirements.lock (scripts/lock.sh) pins a version of everything pyproject.toml asks for."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (REPO / "containers" / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = [*pyproject["project"]["dependencies"], *pyproject["project"]["optional-dependencies"]["dev"]]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "torch":  # the image installs the build containers/Dockerfile's TORCH_SPEC names
            continue
        assert name in pins, f"{name} is in pyproject.toml but not in the lock: run scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {name}=={pins[name]}, pyproject.toml asks for {requirement.specifier}: run scripts/lock.sh"
        )
