"""The cluster path: profiles/slurm (filled in or not), Apptainer binds, the conda environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import yaml
from conftest import REPO, run_snakemake

from promis_repro.workflow_cluster import apptainer_binds, empty_slurm_settings

CELL = "results/codellama-7b-instruct/mbppplus/ppo/seed1/metrics.json"
PIP_DRY_RUN = (sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet")
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def test_slurm_profile_asks_for_a100s_and_runs_in_the_container():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm" and profile["slurm-requeue"] is True
    assert profile["software-deployment-method"] == "apptainer" and "--nv" in profile["apptainer-args"]
    assert profile["slurm-init-seconds-before-status-checks"] <= 60 and profile["latency-wait"] >= 30
    grid = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert grid["resources"]["gpu"]["gpu"] == 1 and grid["resources"]["gpu"]["gpu_model"] == "a100"
    assert "gpu" not in grid["resources"]["cpu"]
    ci = yaml.safe_load((REPO / "profiles" / "slurm-ci" / "config.yaml").read_text())
    assert ci["slurm-status-command"] == "squeue"
    # the CI profile is the real one filled in for the CI cluster: the same GPU rules, the same A100 request
    assert set(ci["set-resources"]) == set(profile["set-resources"]) == {"run_cell", "train_agent"}
    ci_grid = yaml.safe_load((REPO / "config" / "slurm-ci.yaml").read_text())
    assert ci_grid["resources"]["gpu"]["gpu_model"] == grid["resources"]["gpu"]["gpu_model"]


def _filled_in(tmp_path: Path, gpu_partitions: int = 2) -> Path:
    text = PROFILE.read_text()
    text = text.replace('slurm_partition: ""  # FILL IN: the partition for CPU', "slurm_partition: cpu  # CPU", 1)
    text = text.replace('slurm_partition: ""', "slurm_partition: gpu-a100", gpu_partitions)
    text = text.replace('slurm_account: ""', "slurm_account: proj42").replace('qos: ""', "qos: normal")
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(text)
    return tmp_path / "profile"


def _dry_run(tmp_path: Path, profile: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_snakemake("-n", CELL, "--profile", str(profile), env=env)


def test_the_slurm_profile_refuses_to_plan_until_filled_in(tmp_path, apptainer_stand_in):
    done = _dry_run(tmp_path, REPO / "profiles" / "slurm", apptainer_stand_in)
    assert done.returncode != 0
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("promis-repro:")]
    assert "default-resources: slurm_partition empty" in line and "profiles/slurm/config.yaml" in line
    # everything filled in but the GPU partition of one rule: that setting is the one named
    done = _dry_run(tmp_path, _filled_in(tmp_path, gpu_partitions=1), apptainer_stand_in)
    assert done.returncode != 0 and "set-resources: train_agent: slurm_partition empty" in done.stderr


def _resources_by_rule(output: str) -> dict[str, dict[str, str]]:
    resources, rule = {}, None
    for line in output.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and rule:
            pairs = line.split("resources:", 1)[1].strip().split(", ")
            resources[rule] = dict(pair.split("=", 1) for pair in pairs)
    return resources


def test_a_filled_in_profile_sends_gpu_rules_to_a100s_and_the_rest_to_cpu_nodes(tmp_path, apptainer_stand_in):
    done = _dry_run(tmp_path, _filled_in(tmp_path), apptainer_stand_in)
    assert done.returncode == 0, done.stderr[-3000:]
    resources = _resources_by_rule(done.stdout + done.stderr)
    assert {"run_cell", "train_agent", "evaluate_cell", "fetch_model", "data_split"} <= set(resources)
    for rule, settings in resources.items():
        assert settings["slurm_account"] == "proj42" and settings["qos"] == "normal", rule
        if rule in ("run_cell", "train_agent"):
            assert settings["slurm_partition"] == "gpu-a100" and settings["gpu"] == "1", rule
            assert settings["gpu_model"] == "a100", rule
        else:
            assert settings["slurm_partition"] == "cpu" and "gpu" not in settings, rule


def test_empty_slurm_settings_are_named_and_absent_ones_are_fine():
    def resources(**values):
        return {key: SimpleNamespace(raw=repr(value)) for key, value in values.items()}

    settings = SimpleNamespace(
        default_resources=resources(slurm_partition="cpu", mem_mb=1000, qos=""),
        overwrite_resources={"run_cell": resources(slurm_partition=""), "train_agent": resources(runtime=5)},
    )
    assert empty_slurm_settings(settings) == ["default-resources: qos", "set-resources: run_cell: slurm_partition"]
    assert empty_slurm_settings(SimpleNamespace(default_resources=None, overwrite_resources={})) == []


def test_apptainer_binds_what_lies_outside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("APPTAINER_BIND", "/opt/site:/opt/site")
    workdir = tmp_path / "project"
    (workdir / "results").mkdir(parents=True)
    outside = tmp_path / "scratch" / "results"
    mounted = (str(tmp_path / "tmp"),)  # as /tmp is
    paths = (None, workdir / "results", outside, tmp_path / "tmp" / "x", outside)
    added = apptainer_binds(*paths, workdir=str(workdir), mounted=mounted)
    assert added == [str(outside)] and outside.is_dir()  # created: Apptainer binds only what exists
    assert os.environ["APPTAINER_BIND"] == f"/opt/site:/opt/site,{outside}"
    assert apptainer_binds(outside, workdir=str(workdir), mounted=mounted) == []  # already bound
    # data to read is never created; a path through a symbolic link is bound where the jobs look for it
    assert apptainer_binds(tmp_path / "no-such-data", create=False, workdir=str(workdir), mounted=mounted) == []
    assert not (tmp_path / "no-such-data").exists()
    (tmp_path / "disk" / "data").mkdir(parents=True)
    (tmp_path / "data").symlink_to(tmp_path / "disk" / "data")
    added = apptainer_binds(tmp_path / "data", create=False, workdir=str(workdir), mounted=mounted)
    assert added == [f"{tmp_path / 'disk' / 'data'}:{tmp_path / 'data'}"]


def test_the_conda_environment_lists_pyproject_and_resolves_on_pypi(tmp_path):
    env = yaml.safe_load((REPO / "envs" / "promis-repro.yaml").read_text())
    (pip_section,) = [item["pip"] for item in env["dependencies"] if isinstance(item, dict)]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pip_section == pyproject["project"]["dependencies"], "envs/promis-repro.yaml drifted from pyproject.toml"
    assert not any(item.startswith(("-e", ".", "/")) for item in pip_section), "no paths: Snakemake copies the file"
    # the project itself comes from the post-deploy script, from the directory job_environment exports
    deploy = (REPO / "envs" / "promis-repro.post-deploy.sh").read_text()
    assert 'pip install --no-deps -e "$PROMIS_REPRO_SOURCE"' in deploy
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(pip_section) + "\n")
    report = tmp_path / "report.json"
    # PyPI itself, not this machine's pip configuration (local wheel directories, extra indexes)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    done = subprocess.run(
        [*PIP_DRY_RUN, "--index-url", "https://pypi.org/simple", "--report", str(report), "-r", str(requirements)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**environment, "PIP_CONFIG_FILE": os.devnull},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installed = json.loads(report.read_text())["install"]
    resolved = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installed}
    assert resolved["torch"] == "2.13.0" and resolved["snakemake"] == "9.27.1"


def test_jobs_are_told_the_source_the_lock_and_the_hub_settings_that_are_set(tmp_path, monkeypatch):
    from promis_repro.workflow_cluster import job_environment

    monkeypatch.chdir(tmp_path)
    for name in ("HF_TOKEN", "HF_HOME", "PROMIS_REPRO_MODELS", "PROMIS_REPRO_MODELS_LOCK", "APPTAINER_BIND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("PROMIS_REPRO_MODELS", "models.yaml")  # relative: made absolute for jobs elsewhere
    names = job_environment("project", None, "results")
    assert os.environ["PROMIS_REPRO_SOURCE"] == str(tmp_path / "project")
    assert os.environ["PROMIS_REPRO_MODELS"] == str(tmp_path / "models.yaml")
    assert os.environ["PROMIS_REPRO_MODELS_LOCK"] == str(tmp_path / "models.lock.yaml")
    # passed only when set: Snakemake's envvars refuses an unset variable
    assert {"PROMIS_REPRO_SOURCE", "PROMIS_REPRO_MODELS_LOCK", "HF_TOKEN", "PROMIS_REPRO_MODELS"} <= set(names)
    assert "HF_HOME" not in names and "APPTAINER_BIND" not in names  # everything lies in the working directory
