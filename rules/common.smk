# Helpers shared by every rules file: config validation, the grid, paths and command-line pieces.
import json
import shutil
import sys

from promis_repro.analysis.tree import FIGURES, table_names
from promis_repro.errors import UserError
from promis_repro.workflow_config import validate_pipeline_config

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
AGENTS = {"ppo": "ppo", "lpo": "lpo", "rl_rewriter": "rl_rewriter"}
DATA_DIR_ARG = f"--data-dir {config['data_dir']}" if config.get("data_dir") else ""


def feedback_suffixes():
    """Directory suffixes of the feedback variants: '' for the configured mode, '-oracle' for the leaky variant."""
    return [""] + (["-oracle"] if config.get("oracle_variant") else [])


def all_metrics():
    return [
        f"{RESULTS}/{model}/{benchmark}/{strategy}{suffix}/seed{seed}/metrics.json"
        for model in config["generators"]
        for benchmark in config["benchmarks"]
        for strategy in config["strategies"]
        for suffix in feedback_suffixes()
        for seed in config["seeds"]
    ]


def all_agents():
    return [
        f"{RESULTS}/agents/{strategy}/{model}/seed{seed}/training.json"
        for strategy in config["strategies"]
        if strategy in AGENTS
        for model in config["generators"]
        for seed in config["seeds"]
    ]


def model_record(name):
    return f"{RESULTS}/models/{name}.json"


def cell_feedback(wildcards):
    return "oracle" if wildcards.variant == "-oracle" else config["feedback"]


def cell_inputs(wildcards):
    inputs = {
        "strategy_config": f"{RESULTS}/config/strategy.yaml",
        "generator": model_record(wildcards.model),
        "rewriter": model_record(config["rewriter"]),
    }
    if wildcards.strategy in AGENTS:
        inputs["agent"] = (
            f"{RESULTS}/agents/{wildcards.strategy}/{wildcards.model}/seed{wildcards.seed}/training.json"
        )
    return inputs


def trained_arg(wildcards, input):
    return (
        f"--trained {os.path.dirname(input.agent)}" if "agent" in input.keys() else ""
    )


def limit_arg(key="limit"):
    value = config.get(key)
    return f"--limit {value}" if value else ""


def gpu_resources():
    return config["resources"]["gpu"]


def cpu_resources():
    return config["resources"]["cpu"]


def feedback_modes():
    """The feedback modes of the grid's cells, as the tables name them."""
    return [config["feedback"]] + (["oracle"] if config.get("oracle_variant") else [])


def table_caption(name):
    if name == "paper_vs_reproduced":
        return "../workflow/report/paper_vs_reproduced.rst"
    if name.startswith("apps_difficulty_"):
        return "../workflow/report/apps_difficulty.rst"
    return "../workflow/report/benchmark_table.rst"
