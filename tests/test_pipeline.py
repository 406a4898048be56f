"""The Snakemake workflow as text and as a DAG: lint, the full grid's dry run, config validation, containers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _job_counts(output: str) -> dict[str, int]:
    counts = {}
    for line in output.split("Job stats:", 1)[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_lint_is_clean():
    done = _snakemake("--lint", "--configfile", "config/tiny.yaml")
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
    done = _snakemake("-n")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = _job_counts(done.stdout + done.stderr)
    # 3 generators x 4 benchmarks (the MBPP test split, MBPP+, HumanEval+, APPS) x 12 strategies x 5 seeds
    assert counts["evaluate_cell"] == 3 * 4 * 12 * 5
    assert counts["run_cell"] == 3 * 4 * 12 * 5
    assert counts["train_agent"] == 3 * 3 * 5  # ppo, lpo, rl_rewriter per generator and seed
    for stage in ("aggregate", "stats", "tables", "figures", "provenance", "leakage_audit"):
        assert counts[stage] == 1, stage
    text = done.stdout + done.stderr
    assert "results/codellama-7b-instruct/mbpp/ppo/seed1/metrics.json" in text
    assert "results/codellama-7b-instruct/mbppplus/ppo/seed1/metrics.json" in text
    assert "results/agents/ppo/codellama-7b-instruct/seed5/training.json" in text


def test_one_cell_needs_only_its_own_inputs():
    target = "results/codellama-7b-instruct/mbppplus/ppo/seed1/metrics.json"
    done = _snakemake("-n", target)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = _job_counts(done.stdout + done.stderr)
    assert counts == {
        "data_split": 1,
        "evaluate_cell": 1,
        "fetch_model": 2,
        "run_cell": 1,
        "strategy_config": 1,
        "total": 7,
        "train_agent": 1,
    }


def test_oracle_variant_adds_labelled_cells(tmp_path):
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["oracle_variant"] = True
    config["results"] = str(tmp_path / "results")  # an empty tree: cells a tiny run left behind are not planned
    path = tmp_path / "oracle.yaml"
    path.write_text(yaml.safe_dump(config))
    done = _snakemake("-n", "--configfile", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _job_counts(done.stdout + done.stderr)["evaluate_cell"] == 2 * 4 * 12 * 2
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
        ("generators", ["gpt-9"], "gpt-9"),
        ("rewriter", "all-minilm-l6-v2", "embedder"),
        ("strategy", {"max_steps": 0}, "max_steps"),
        ("strategy", {"reward": {"kind": "dense"}}, "reward"),
        ("strategy", {"ppo": {"nsteps": 3}}, "nsteps"),
    ],
)
def test_a_bad_config_stops_with_one_line_naming_the_key(tmp_path, key, value, named):
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = _snakemake("-n", "--configfile", str(path))
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("promis-repro: invalid config:"), done.stderr
    assert named in lines[0] and key in lines[0]


def test_unknown_config_key_is_refused(tmp_path):
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["sedes"] = [1]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = _snakemake("-n", "--configfile", str(path))
    assert done.returncode != 0 and "'sedes' was unexpected" in done.stderr


def test_apptainer_definition_is_generated_from_the_dockerfile(tmp_path):
    generated = tmp_path / "promis-repro.def"
    done = subprocess.run(
        [sys.executable, "-m", "spython.client", "recipe", "containers/Dockerfile", str(generated)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:  # older spython has no module entry point
        done = subprocess.run(
            [str(Path(sys.executable).parent / "spython"), "recipe", "containers/Dockerfile", str(generated)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert generated.read_text() == (REPO / "containers" / "promis-repro.def").read_text()
    dockerfile = (REPO / "containers" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:", dockerfile, re.M) and "python3.11" in dockerfile
    assert "requirements.lock" in dockerfile


def test_slurm_profile_asks_for_a100s_and_runs_in_the_container():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["software-deployment-method"] == "apptainer" and "--nv" in profile["apptainer-args"]
    assert profile["slurm-init-seconds-before-status-checks"] <= 60 and profile["latency-wait"] >= 30
    grid = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert grid["resources"]["gpu"]["gpu"] == 1 and grid["resources"]["gpu"]["gpu_model"] == "a100"
    assert "gpu" not in grid["resources"]["cpu"]
    ci = yaml.safe_load((REPO / "profiles" / "slurm-ci" / "config.yaml").read_text())
    assert ci["slurm-status-command"] == "squeue"
