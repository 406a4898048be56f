"""The cost table's model: a job's seconds from ``config/cost_table.yaml`` where nothing recorded them.

The table holds throughput guesses (labelled as estimates there) and its header states every formula this
module computes. ``analysis.cost`` prefers recorded costs and falls back on ``TableModel.seconds``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from promis_repro import grid
from promis_repro.errors import UserError

if TYPE_CHECKING:
    from promis_repro.analysis.cost import Job

#: the table's keys (``local_benchmark_tasks`` is optional)
REQUIRED_KEYS = (
    *("models", "strategy_calls", "overhead_seconds", "test_seconds", "evaluate_seconds_per_program"),
    "levels_tools_seconds",
    *("benchmark_tasks", "pools", "training", "fixed_seconds", "fetch_seconds_per_billion_params"),
    *("data_split", "grid_seconds"),
)


def load_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The cost table at ``path``, checked for its keys; one-line ``UserError`` otherwise."""
    try:
        table = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: unreadable cost table ({exc})") from None
    missing = [key for key in REQUIRED_KEYS if key not in (table or {})]
    if missing:
        raise UserError(f"{path}: cost table without {', '.join(missing)}")
    if "default" not in table["models"]:
        raise UserError(f"{path}: models needs a 'default' entry (a model the table does not name)")
    return table


def _budget(text: Any, budget: int) -> float:
    """``strategy_calls`` entries: a number, ``B`` or ``<x>B`` (x times the budget)."""
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"\s*([0-9.]*)\s*B\s*", str(text))
    if not match:
        raise UserError(f"cost table: strategy_calls entry {text!r} is neither a number nor '<x>B'")
    return (float(match.group(1)) if match.group(1) else 1.0) * budget


class TableModel:
    """Seconds per job from the cost table, for one pipeline config (its grid, budget and training lengths)."""

    def __init__(self, table: dict[str, Any], config: dict[str, Any]) -> None:
        from promis_repro.strategies.config import parse_strategy_file

        self.table, self.config = table, config
        self.settings = parse_strategy_file(config["strategy"], where="config key strategy")
        self.models = table["models"]

    def full_tasks(self, benchmark: str) -> int:
        """A benchmark's evaluated tasks before the config's limit (the local APPS subset with a ``data_dir``)."""
        sizes = dict(self.table["benchmark_tasks"])
        if self.config.get("data_dir"):
            sizes.update(self.table.get("local_benchmark_tasks") or {})
        return int(sizes[benchmark])

    def tasks(self, benchmark: str) -> int:
        """The tasks one cell of ``benchmark`` runs: the benchmark's, up to the config's ``limit``."""
        from promis_repro.workflow_config import task_limit

        size, limit = self.full_tasks(benchmark), task_limit(self.config, benchmark)
        return min(size, limit) if limit else size

    def task_results(self) -> int:
        """The grid's results, one per task of each cell: what aggregate, stats and the report stages read."""
        config = self.config
        from promis_repro.workflow_config import grid_has

        variants = grid.feedback_variants(config["feedback"], config.get("oracle_variant", False))
        pairs = sum(grid_has(s, m) for m in config["generators"] for s in config["strategies"])
        cells = pairs * len(variants) * len(config["seeds"])
        return cells * sum(self.tasks(benchmark) for benchmark in config["benchmarks"])

    def model(self, name: str) -> dict[str, Any]:
        return self.models.get(name, self.models["default"])

    def startup(self, rule: str, models: list[str]) -> float:
        """Imports and the like (``overhead_seconds``) plus loading each model's weights (``load_seconds``)."""
        return self.table["overhead_seconds"][rule] + sum(self.model(name).get("load_seconds", 0) for name in models)

    def run_models(self, job: Job) -> list[str]:
        return [job.key["model"], *([self.config["rewriter"]] if self.calls(job.key["strategy"])[1] else [])]

    def calls(self, strategy: str) -> tuple[float, float]:
        entry = self.table["strategy_calls"].get(strategy, {"generator": "B", "rewriter": "B"})
        cfg = self.settings.config
        return _budget(entry["generator"], cfg.max_generator_calls), _budget(entry["rewriter"], cfg.max_rewriter_calls)

    def run_cell(self, job: Job) -> float:
        generator, rewriter = self.model(job.key["model"]), self.model(self.config["rewriter"])
        g, r = self.calls(job.key["strategy"])
        per_task = g * generator["call_seconds"] + r * rewriter["call_seconds"] + g * self.table["test_seconds"]
        return self.startup("run_cell", self.run_models(job)) + self.tasks(job.key["benchmark"]) * per_task

    def evaluate_cell(self, job: Job) -> float:
        g, _ = self.calls(job.key["strategy"])
        programs = self.tasks(job.key["benchmark"]) * (1 + g)
        seconds = self.table["evaluate_seconds_per_program"].get(job.key["benchmark"], 1.0)
        # the final samples' levels, as if every one passed (an upper bound): the quality tools, 2 x repeats - 1
        # more runs (the canonical solution's repeats, the sample's reruns)
        repeats = self.settings.reward.levels.reference_repeats
        levels = self.tasks(job.key["benchmark"]) * (self.table["levels_tools_seconds"] + (2 * repeats - 1) * seconds)
        return self.startup("evaluate_cell", []) + programs * seconds + levels

    def _pool(self, name: str, limit_key: str) -> int:
        limit = self.config["train"].get(limit_key)
        return min(int(self.table["pools"][name]), int(limit)) if limit else int(self.table["pools"][name])

    def train_agent(self, job: Job) -> float:
        from promis_repro.workflow_config import training_length

        generator, rewriter = self.model(job.key["model"]), self.model(self.config["rewriter"])
        train, selection = self._pool("train", "limit"), self._pool("selection", "selection_limit")
        agent, sections = job.key["agent"], self.settings.sections
        length = training_length(self.config, agent)
        if agent == "ppo":
            timesteps = length or sections["ppo"].get("total_timesteps", 10_000)
            eval_every = sections["ppo"].get("eval_every", 1_000)
            share = self.table["training"]["ppo"]["rewrite_share"]
            step = generator["unbatched_call_seconds"] + share * rewriter["unbatched_call_seconds"]
            evaluations = 1 + timesteps // eval_every
            seconds = timesteps * (step + self.table["test_seconds"])
            seconds += evaluations * selection * self.settings.config.max_steps * generator["call_seconds"]
        elif agent in ("rl_rewriter", "self_correct_rl"):
            section = sections["grpo" if agent == "rl_rewriter" else agent]
            steps = length or section.get("max_steps", 200)
            # per completion, rl_rewriter: a rewrite, then the frozen generator's code; self_correct_rl: two turns
            first = rewriter if agent == "rl_rewriter" else generator
            completion = first["call_seconds"] + generator["call_seconds"]
            per_step = section.get("per_device_train_batch_size", 4) * completion
            seconds = steps * (per_step + self.table["training"][agent]["update_seconds"])
        else:  # lpo (strategies/lpo.py DEFAULTS under the config's strategy.lpo)
            from promis_repro.strategies.lpo import DEFAULTS

            lpo = {**DEFAULTS, **(self.config["strategy"].get("lpo") or {})}
            batches = math.ceil(lpo["epochs"] * train / lpo["batch_size"])
            batches = min(batches, lpo["max_batches"]) if lpo["max_batches"] else batches
            seconds = batches * (lpo["batch_size"] * generator["call_seconds"] + 2 * rewriter["unbatched_call_seconds"])
            seconds += (1 + math.ceil(batches / lpo["eval_every"])) * selection * generator["call_seconds"]
        models = [job.key["model"], *([] if agent == "self_correct_rl" else [self.config["rewriter"]])]
        return self.startup("train_agent", models) + seconds

    def fetch_model(self, job: Job) -> float:
        """A fixed part plus the download, by the model's size (``fetch_seconds_per_billion_params``)."""
        size = self.model(job.key["model"]).get("params_b", 7)
        return self.table["fixed_seconds"]["fetch_model"] + size * self.table["fetch_seconds_per_billion_params"]

    def data_split(self, job: Job) -> float:
        """Embedding every task of the benchmarks the pools are checked against (whole: the split ignores the
        limit) and the pools' candidates (``data.split``)."""
        from promis_repro.data.split import decontaminated_benchmarks

        checked = decontaminated_benchmarks(self.config["benchmarks"])
        tasks = sum(self.full_tasks(name) for name in checked) + sum(map(int, self.table["pools"].values()))
        split = self.table["data_split"]
        return split["base_seconds"] + tasks * split["seconds_per_task"]

    def seconds(self, job: Job) -> float:
        """The table's seconds of one job: its rule's formula, else ``grid_seconds``, else ``fixed_seconds``."""
        formulas = {
            "data_split": self.data_split,
            "fetch_model": self.fetch_model,
            "train_agent": self.train_agent,
            "run_cell": self.run_cell,
            "evaluate_cell": self.evaluate_cell,
        }
        if job.rule in formulas:
            return formulas[job.rule](job)
        per_grid = self.table["grid_seconds"].get(job.rule)
        if per_grid is not None:
            return per_grid["base_seconds"] + self.task_results() * per_grid["seconds_per_task_result"]
        return float(self.table["fixed_seconds"].get(job.rule, 60))
