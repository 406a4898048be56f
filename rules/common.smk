# Helpers shared by every rules file: config validation, the grid, paths and command-line pieces.
# The grid's vocabulary (names, path templates, wildcard patterns) comes from promis_repro.grid.
import json
import re
import shutil
import sys

from promis_repro import grid
from promis_repro.errors import UserError
from promis_repro.generation.registry import get_model
from promis_repro.workflow_cluster import empty_slurm_settings, job_environment
from promis_repro.workflow_config import (
    grid_has,
    task_limit,
    training_length,
    validate_pipeline_config,
)

# one line naming the key, before any job is planned (the schema, model names, strategy settings)
try:
    validate_pipeline_config(
        config, workflow.source_path("../workflow/schemas/config.schema.yaml")
    )
except UserError as exc:
    sys.exit(f"promis-repro: invalid config: {exc}")

RESULTS = config["results"]
# rules call the promis-repro command; when Snakemake runs from the project's venv without it being
# activated, the command sits next to this Python
if shutil.which("promis-repro") is None:
    os.environ["PATH"] = (
        f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"
    )
# what every job, wherever it runs (here, a SLURM node, a conda env, an Apptainer image), is told: the
# project's source (envs/promis-repro.post-deploy.sh installs it from there), the model lock (the hub
# commits `promis-repro models lock` pinned: one results tree never mixes revisions), and, when set,
# the hub's token (gated models), caches and mirrors (docs/cluster.md); Apptainer mounts only the
# working directory (as home) and /tmp, so the paths jobs use elsewhere are bound (APPTAINER_BIND)
workflow.register_envvars(
    *job_environment(workflow.basedir, config.get("data_dir"), RESULTS)
)
# SLURM settings profiles/slurm leaves for the user to fill in once: refuse to plan while one is empty
empty = empty_slurm_settings(workflow.resource_settings)
if empty:
    sys.exit(
        f"promis-repro: the profile leaves {empty[0]} empty; fill it in (profiles/slurm/config.yaml, "
        '"FILL IN ONCE"), or delete the line if your cluster does not use it'
    )

DATA_DIR_ARG = f"--data-dir {config['data_dir']}" if config.get("data_dir") else ""
# where the kernel refuses user namespaces, generated code runs only when the config says so (and it is recorded);
# a top-level option, so it goes between "promis-repro" and the command
SANDBOX_ARG = "--allow-weak-sandbox" if config["allow_weak_sandbox"] else ""


def grid_variants():
    """The directory suffixes of the grid's cell variants ("" and, with oracle_variant, the oracle twin's)."""
    variants = grid.feedback_variants(config["feedback"], config["oracle_variant"])
    return [variant for _, variant in variants]


def variants_pattern():
    # "(?:)" matches the empty suffix only; Snakemake would take an empty pattern for "no constraint"
    return "|".join(re.escape(variant) for variant in grid_variants()) or "(?:)"


# every wildcard's pattern, once for all rules; a cell variant only when the grid runs it (an oracle
# twin the config does not run has no rule, rather than an input function's traceback)
wildcard_constraints:
    **grid.WILDCARD_CONSTRAINTS | {"variant": variants_pattern()},


def cell_file(name):
    """A file of one cell, as a pattern with the cell's wildcards."""
    return f"{RESULTS}/{grid.CELL_TEMPLATE}/{name}"


def agent_file(name):
    """A file of one trained agent, as a pattern with the agent's wildcards."""
    return f"{RESULTS}/{grid.AGENT_TEMPLATE}/{name}"


def log_file(stage, template):
    return f"{RESULTS}/logs/{stage}/{template}.log"


def benchmark_file(rule):
    """Snakemake's measurements of one job of `rule` (wall time, max RSS, CPU): what `promis-repro cost` sizes from."""
    return f"{RESULTS}/{grid.BENCHMARK_TEMPLATES[rule]}"


def feedback_variants():
    """(feedback mode, directory suffix) of every cell variant: the configured mode, then the oracle twin."""
    return grid.feedback_variants(config["feedback"], config["oracle_variant"])


def feedback_modes():
    """The feedback modes of the grid's cells, as the tables name them."""
    return [mode for mode, _ in feedback_variants()]


def all_metrics():
    # grid_has: self_correct_rl only with a generator it can fine-tune
    return [
        f"{RESULTS}/{grid.cell_path(model, benchmark, strategy, seed, variant)}/metrics.json"
        for model in config["generators"]
        for benchmark in config["benchmarks"]
        for strategy in config["strategies"]
        if grid_has(strategy, model)
        for _, variant in feedback_variants()
        for seed in config["seeds"]
    ]


def all_agents():
    return [
        f"{RESULTS}/{grid.agent_path(strategy, model, seed)}/training.json"
        for strategy in config["strategies"]
        if strategy in grid.AGENTS
        for model in config["generators"]
        if grid_has(strategy, model)
        for seed in config["seeds"]
    ]


def model_record(name):
    return f"{RESULTS}/models/{name}.json"


def cell_feedback(wildcards):
    """The feedback mode of a cell variant (its directory suffix)."""
    modes = {variant: mode for mode, variant in feedback_variants()}
    return modes[wildcards.variant]


def run_inputs(model):
    return {
        "strategy_config": f"{RESULTS}/config/strategy.yaml",
        # the guard's training side: a cell never runs on a task the agents trained or were selected on
        "pools": f"{RESULTS}/data/decontamination.json",
        "generator": model_record(model),
        "rewriter": model_record(config["rewriter"]),
    }


def agent_record(strategy, model, seed):
    return f"{RESULTS}/{grid.agent_path(strategy, model, seed)}/training.json"


def group_dir(wildcards):
    """The staged cells of a cell's (or a group's) model x benchmark x seed."""
    group = grid.GROUP_TEMPLATE.format(**dict(wildcards.items()))
    return f"{RESULTS}/{group}"


def cell_inputs(wildcards):
    inputs = run_inputs(wildcards.model)
    if wildcards.strategy in grid.AGENTS:
        inputs["agent"] = agent_record(
            wildcards.strategy, wildcards.model, wildcards.seed
        )
    if config["group_cells"]:
        inputs["group"] = f"{group_dir(wildcards)}/group.json"
    return inputs


def adopt_arg(wildcards):
    """``--adopt STAGED``: the cell as its group job ran it, when the grid runs groups."""
    if not config["group_cells"]:
        return ""
    return f"--adopt {group_dir(wildcards)}/{wildcards.strategy}"


def group_strategies(wildcards):
    return [s for s in config["strategies"] if grid_has(s, wildcards.model)]


def group_inputs(wildcards):
    inputs = run_inputs(wildcards.model)
    for strategy in group_strategies(wildcards):
        if strategy in grid.AGENTS:
            inputs[f"agent_{strategy}"] = agent_record(
                strategy, wildcards.model, wildcards.seed
            )
    return inputs


def group_trained_arg(wildcards, input):
    pairs = [
        f"{strategy}={os.path.dirname(input[f'agent_{strategy}'])}"
        for strategy in group_strategies(wildcards)
        if strategy in grid.AGENTS
    ]
    return f"--trained {' '.join(pairs)}" if pairs else ""


def group_cell_names(wildcards):
    return " ".join(
        f"{strategy}={RESULTS}/{grid.cell_path(wildcards.model, wildcards.benchmark, strategy, wildcards.seed, wildcards.variant)}"
        for strategy in group_strategies(wildcards)
    )


def trained_arg(wildcards, input):
    return (
        f"--trained {os.path.dirname(input.agent)}" if "agent" in input.keys() else ""
    )


def task_limit_arg(wildcards):
    """``--limit N`` for the benchmark of a cell or group job; empty when it runs every task."""
    value = task_limit(config, wildcards.benchmark)
    return f"--limit {value}" if value else ""


def limit_arg(key="limit", section=None):
    """``--limit N`` (``--selection-limit N``) from the config (or one of its sections); empty when unset."""
    value = (config if section is None else section).get(key)
    return f"--{key.replace('_', '-')} {value}" if value else ""


def timesteps_arg(agent):
    """``--timesteps N`` for an agent whose length the config's ``train:`` section sets; else empty."""
    value = training_length(config, agent)
    return f"--timesteps {value}" if value is not None else ""


def gpu_resources():
    return config["resources"]["gpu"]


def cpu_resources():
    return config["resources"]["cpu"]


def table_caption(name):
    if name == "paper_vs_reproduced":
        return "../workflow/report/paper_vs_reproduced.rst"
    if name.startswith("apps_difficulty_"):
        return "../workflow/report/apps_difficulty.rst"
    return "../workflow/report/benchmark_table.rst"


def model_identity(name):
    """The weights' identity as one string (a parameter of fetch_model, so a change reruns it)."""
    return json.dumps(get_model(name).identity(), sort_keys=True)
