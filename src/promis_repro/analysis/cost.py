"""The bill before the run: the jobs of a config's grid per rule, and their estimated GPU-/CPU-hours.

The jobs are the Snakefile's, expanded from the config with the same grid vocabulary (``grid``:
``cell_path``, ``agent_path``, ``feedback_variants``, ``AGENTS``): one ``run_cell`` and one
``evaluate_cell`` per generator x benchmark x strategy x feedback variant x seed, one ``train_agent``
per agent among the strategies x generator x seed, one ``fetch_model`` per generator and the rewriter,
one job of every other rule (``tests/test_cell_and_cost.py`` checks the counts against Snakemake's
dry run). A job is "to run" when its output is missing under the results tree. The Snakefile's
``localrules`` (``grid.LOCAL_RULES``) run where Snakemake runs: counted as jobs, billed as no cluster time.

Each job's seconds come from the first source that has them:

1. ``benchmark``: Snakemake benchmark files of that rule under the results tree (``grid.BENCHMARK_TEMPLATES``,
   column ``s``) of the jobs with the same key (run/evaluate: model x benchmark x strategy, per task of the
   recorded cell, times the job's tasks; train: agent x model; fetch: model), counted only when the cell's
   ``cost.json`` (the agent's ``training.json``) says it ran with the grid's settings.
2. ``cost.json`` (run_cell only): of the recorded cells with the same model x benchmark x strategy run with
   the grid's strategy settings (the budget, tokens, ...), the mean seconds per task (the run's wall seconds, or
   the model seconds it records when larger: a run served from the generation cache records the seconds the
   model first took), times the job's tasks, plus the table's start-up overhead.
3. ``table``: ``config/cost_table.yaml`` through ``analysis.cost_table.TableModel`` (estimates, labelled so).

GPU-hours are job hours times the GPUs a job asks for (the config's ``resources.gpu.gpu``); CPU-hours
are job hours times the cores it asks for (``cpus_per_task``, else 1).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promis_repro import grid
from promis_repro.analysis.cost_table import TableModel
from promis_repro.errors import UserError

#: the rules of the Snakefile's default target, in the order they run
RULES = (
    "data_split",
    "strategy_config",
    "fetch_model",
    "train_agent",
    "run_group",
    "run_cell",
    "evaluate_cell",
    "aggregate",
    "stats",
    "tables",
    "figures",
    "provenance",
    "leakage_audit",
)
#: rules that ask for the config's ``resources.gpu`` (the rest: ``resources.cpu``)
GPU_RULES = ("run_cell", "train_agent", "run_group")
#: one output of each single-job rule (relative to the results root): present = done
SINGLE_OUTPUTS = {
    "data_split": "data/decontamination.json",
    "strategy_config": "config/strategy.yaml",
    "aggregate": "aggregate/cells.csv",
    "stats": "stats/comparisons.csv",
    "tables": "tables/index.json",
    "figures": f"figures/{grid.FIGURES[0]}.png",
    "provenance": "report/provenance.json",
    "leakage_audit": f"tables/{grid.LEAKAGE_AUDIT}.csv",
}
SOURCES = ("benchmark", "cost.json", "table")


@dataclass(frozen=True)
class Job:
    rule: str
    output: Path
    key: dict[str, str] = field(default_factory=dict)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Snakemake's way with several ``--configfile``: later files update earlier ones, key by key."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def load_config(configfiles: list[str | os.PathLike[str]], schema: str | os.PathLike[str]) -> dict[str, Any]:
    """The pipeline config as the Snakefile sees it: the files merged, checked against ``schema`` (the
    Snakefile's, ``workflow/schemas/config.schema.yaml``) and completed with defaults."""
    from promis_repro.workflow_config import validate_pipeline_config

    config: dict[str, Any] = {}
    for path in configfiles:
        try:
            document = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: unreadable config ({exc})") from None
        config = _merge(config, document or {})
    validate_pipeline_config(config, schema)
    return config


def grid_jobs(config: dict[str, Any]) -> dict[str, list[Job]]:
    """Every job of the Snakefile's default target for ``config``, by rule."""
    from promis_repro.workflow_config import grid_has

    results = Path(config["results"])
    seeds = [str(seed) for seed in config["seeds"]]
    variants = grid.feedback_variants(config["feedback"], config.get("oracle_variant", False))
    jobs: dict[str, list[Job]] = {rule: [] for rule in RULES}
    for rule, output in SINGLE_OUTPUTS.items():
        jobs[rule].append(Job(rule, results / output))
    for name in dict.fromkeys([*config["generators"], config["rewriter"]]):
        jobs["fetch_model"].append(Job("fetch_model", results / "models" / f"{name}.json", {"model": name}))
    for agent in (a for a in config["strategies"] if a in grid.AGENTS):
        for model in (m for m in config["generators"] if grid_has(agent, m)):
            for seed in seeds:
                key = {"agent": agent, "model": model, "seed": seed}
                jobs["train_agent"].append(Job("train_agent", results / grid.agent_path(**key) / "training.json", key))
    for model in config["generators"]:
        for benchmark in config["benchmarks"]:
            for strategy in (s for s in config["strategies"] if grid_has(s, model)):
                for _, variant in variants:
                    for seed in seeds:
                        key = {"model": model, "benchmark": benchmark, "strategy": strategy, "variant": variant}
                        key["seed"] = seed
                        cell = results / grid.cell_path(**key)
                        jobs["run_cell"].append(Job("run_cell", cell / "samples.jsonl", key))
                        jobs["evaluate_cell"].append(Job("evaluate_cell", cell / "metrics.json", key))
    if config.get("group_cells"):  # one job per model x benchmark x seed (x variant) runs every strategy
        for model in config["generators"]:
            for benchmark in config["benchmarks"]:
                for _, variant in variants:
                    for seed in seeds:
                        key = {"model": model, "benchmark": benchmark, "seed": seed, "variant": variant}
                        group = results / grid.GROUP_TEMPLATE.format(**key) / "group.json"
                        jobs["run_group"].append(Job("run_group", group, key))
    else:
        del jobs["run_group"]
    return jobs


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _wanted_settings(config: dict[str, Any]) -> Any:
    """The grid's strategy settings, as a run records them in its provenance."""
    from promis_repro.strategies.config import parse_strategy_file

    return _normalised(parse_strategy_file(config["strategy"]).config.as_dict())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def recorded_runs(results: Path, config: dict[str, Any]) -> dict[tuple[str, str, str], list[float]]:
    """Seconds per task of every recorded cell run (``cost.json``) made with the grid's strategy settings,
    by (model, benchmark, strategy)."""
    wanted = _wanted_settings(config)
    runs: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for path in sorted(results.glob(f"{grid.cell_glob()}/cost.json")):
        if path.relative_to(results).parts[0] in grid.NOT_MODELS:
            continue
        try:
            cost = json.loads(path.read_text())
            run = cost["provenance"]["config"]
            tasks = int(cost["n_tasks"])
            seconds = max(float(cost["wall_seconds"]), float(cost["totals"]["model_seconds"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unfinished or foreign file: not a measurement
        if tasks < 1 or _normalised(run.get("strategy_config")) != wanted:
            continue
        runs[(str(run["model"]), str(cost["benchmark"]), grid.base_strategy(str(cost["strategy"])))].append(
            seconds / tasks
        )
    return runs


def _benchmark_seconds(path: Path) -> float | None:
    try:
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        return float(row["s"])
    except (OSError, StopIteration, KeyError, ValueError):
        return None


def _benchmark_files(results: Path, rule: str) -> list[tuple[dict[str, str], Path]]:
    """The benchmark files of ``rule``'s jobs under ``results``, each with its wildcards (matched as Snakemake
    matches them: ``grid.WILDCARD_CONSTRAINTS``)."""
    template = grid.BENCHMARK_TEMPLATES[rule]
    names = re.findall(r"\{(\w+)\}", template)
    pieces = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ...
    pattern = re.compile(
        "".join(
            re.escape(p) if i % 2 == 0 else f"(?P<{p}>{grid.WILDCARD_CONSTRAINTS[p]})" for i, p in enumerate(pieces)
        )
    )
    files = []
    for path in sorted(results.glob(template.format(**dict.fromkeys(names, "*") | {"variant": ""}))):
        match = pattern.fullmatch(path.relative_to(results).as_posix())
        if match:
            files.append((match.groupdict(), path))
    return files


def recorded_benchmarks(results: Path, config: dict[str, Any]) -> dict[tuple[str, ...], list[float]]:
    """Seconds of the jobs Snakemake benchmark files under ``results`` recorded, by (rule, key).

    Cell jobs (run, evaluate) count only when the cell's ``cost.json`` says they ran with the grid's strategy
    settings, and then per task; agents only when ``training.json`` says they trained with the grid's settings,
    pools' limits and length.
    """
    from promis_repro.workflow_config import TRAINING_LENGTH_KEYS, training_length

    wanted = _wanted_settings(config)
    limits = {key: config["train"].get(key) for key in ("limit", "selection_limit")}
    found: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for rule in grid.BENCHMARK_TEMPLATES:
        for key, path in _benchmark_files(results, rule):
            seconds = _benchmark_seconds(path)
            if seconds is None:
                continue
            if rule == "fetch_model":
                found[(rule, key["model"])].append(seconds)
            elif rule == "train_agent":
                agent = key["agent"]
                training = _read_json(results / grid.agent_path(**key) / "training.json")
                run = (training.get("provenance") or {}).get("config") or {}
                length = training.get("timesteps" if agent == "ppo" else "steps")
                expected = training_length(config, agent) if agent in TRAINING_LENGTH_KEYS else None
                same = _normalised(run.get("strategy_config")) == wanted and all(
                    run.get(k) == v for k, v in limits.items()
                )
                if same and (expected is None or length == expected):
                    found[(rule, agent, key["model"])].append(seconds)
            else:  # run_cell, evaluate_cell
                cost = _read_json(results / grid.cell_path(**key) / "cost.json")
                run = (cost.get("provenance") or {}).get("config") or {}
                if cost.get("n_tasks") and _normalised(run.get("strategy_config")) == wanted:
                    found[(rule, key["model"], key["benchmark"], key["strategy"])].append(seconds / cost["n_tasks"])
    return found


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def job_seconds(
    job: Job,
    model: TableModel,
    runs: dict[tuple[str, str, str], list[float]],
    benchmarks: dict[tuple[str, ...], list[float]],
) -> tuple[float, str]:
    """One job's seconds and their source (``SOURCES``): recorded where possible, else the table's."""
    if job.rule == "run_group":
        # a group's work is billed under its cells' run_cell and evaluate_cell, each as if run alone (their
        # start-ups included): with group jobs the bill is an upper bound
        return 0.0, "table"
    if job.rule in ("train_agent", "fetch_model"):
        measured = benchmarks.get((job.rule, *(job.key[k] for k in ("agent", "model") if k in job.key)))
        if measured:
            return _mean(measured), "benchmark"
    elif job.rule in ("run_cell", "evaluate_cell"):
        key = (job.rule, job.key["model"], job.key["benchmark"], job.key["strategy"])
        tasks = model.tasks(job.key["benchmark"])
        if benchmarks.get(key):  # seconds per task of the recorded jobs
            return _mean(benchmarks[key]) * tasks, "benchmark"
        recorded = runs.get(key[1:]) if job.rule == "run_cell" else None
        if recorded:
            return model.startup("run_cell", model.run_models(job)) + _mean(recorded) * tasks, "cost.json"
    return model.seconds(job), "table"


def _rule_bill(rule: str, jobs: list[Job], config: dict[str, Any], priced: list[tuple[float, str]]) -> dict[str, Any]:
    """One rule's line of the bill from its jobs' (seconds, source)."""
    local = rule in grid.LOCAL_RULES
    kind = "gpu" if rule in GPU_RULES else "cpu"
    resources = config["resources"][kind]
    gpus = int(resources.get("gpu", 0) or 0) if kind == "gpu" and not local else 0
    cpus = 0 if local else int(resources.get("cpus_per_task", 1) or 1)
    runtime_hours = resources["runtime"] / 60 if resources.get("runtime") and not local else None
    seconds = [value for value, _ in priced]
    to_run = [value for job, (value, _) in zip(jobs, priced) if not job.output.exists()]
    hours, hours_to_run = sum(seconds) / 3600, sum(to_run) / 3600
    if local:
        device = "local (no cluster job)"
    elif gpus:
        device = f"{gpus} x {resources.get('gpu_model', 'gpu')} GPU"
    else:
        device = f"CPU, {cpus} core{'s' if cpus > 1 else ''}"
    return {
        "rule": rule,
        "jobs": len(jobs),
        "to_run": len(to_run),
        "local": local,
        "device": device,
        "gpus": gpus,
        "cpus": cpus,
        "hours_per_job": hours / len(seconds) if seconds else 0.0,
        "max_hours_per_job": max(seconds, default=0.0) / 3600,
        "job_hours": hours,
        "gpu_hours": hours * gpus,
        "cpu_hours": 0.0 if gpus else hours * cpus,
        "gpu_hours_to_run": hours_to_run * gpus,
        "cpu_hours_to_run": 0.0 if gpus else hours_to_run * cpus,
        "sources": {name: n for name in SOURCES if (n := sum(source == name for _, source in priced))},
        "over_runtime": sum(value / 3600 > runtime_hours for value in seconds) if runtime_hours else 0,
        "runtime_hours": runtime_hours,
    }


def estimate(
    config: dict[str, Any], table: dict[str, Any], results: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The bill: per rule, jobs, jobs to run, resources and estimated hours, with each estimate's source."""
    if results is not None:  # another tree than the config's: its recorded costs, and its outputs present
        config = {**config, "results": str(results)}
    results_root = Path(config["results"])
    jobs = grid_jobs(config)
    model = TableModel(table, config)
    runs = recorded_runs(results_root, config)
    benchmarks = recorded_benchmarks(results_root, config)
    rules = [
        _rule_bill(rule, jobs[rule], config, [job_seconds(job, model, runs, benchmarks) for job in jobs[rule]])
        for rule in RULES
        if rule in jobs
    ]
    totals = {
        key: sum(r[key] for r in rules)
        for key in ("jobs", "to_run", "gpu_hours", "cpu_hours", "gpu_hours_to_run", "cpu_hours_to_run")
    }
    totals["cluster_jobs"] = sum(r["jobs"] for r in rules if not r["local"])
    totals["cluster_jobs_to_run"] = sum(r["to_run"] for r in rules if not r["local"])
    totals["local_jobs"] = sum(r["jobs"] for r in rules if r["local"])
    totals["gpu_jobs"] = sum(r["jobs"] for r in rules if r["gpus"])
    totals["gpu_jobs_to_run"] = sum(r["to_run"] for r in rules if r["gpus"])
    return {
        "results": str(results_root),
        "grid": {key: config[key] for key in ("generators", "rewriter", "benchmarks", "strategies", "seeds", "limit")}
        | {"variants": [mode for mode, _ in grid.feedback_variants(config["feedback"], config.get("oracle_variant"))]},
        "task_results": model.task_results(),
        "gpu": table.get("gpu"),
        "rules": rules,
        "totals": totals,
        "recorded": {"cost.json": sum(map(len, runs.values())), "benchmark": sum(map(len, benchmarks.values()))},
    }
