"""The grid's vocabulary, defined once: benchmarks, strategies, agents, feedback modes and result paths.

Every other place that names these (the Snakemake rules through ``rules/common.smk``, the command
line, the config schema check, the results-tree readers in ``analysis``) imports them from here.
This module imports nothing from the rest of the library, so the rules can load it cheaply.

A *cell* is one generator x benchmark x strategy x feedback variant x seed; its files live in
``{results}/{model}/{benchmark}/{strategy}{variant}/seed{seed}/`` (``CELL_TEMPLATE``), where the
variant is ``""`` for the configured feedback mode and ``"-oracle"`` for the leaky oracle twin.
"""

from __future__ import annotations

import os
from pathlib import Path

#: benchmark names (``data.registry`` maps each to its loader)
BENCHMARKS = ("mbpp", "mbpp_sanitized", "mbppplus", "humaneval", "humanevalplus", "apps")

#: strategy names in the order the paper's tables list them, then our additions
STRATEGIES = (
    "direct",
    "ga_once",
    "rewrite_once",
    "ga_only",
    "rewrite_only",
    "random_hybrid",
    "epic",
    "reflexion",
    "ppo",
    "lpo",
    "self_correct",
    "self_correct_rl",
    "rl_rewriter",
)

#: benchmarks that share a prompt format: MBPP's description and shown assert; HumanEval's signature and docstring
MBPP_FAMILY = ("mbpp", "mbpp_sanitized", "mbppplus")
HUMANEVAL_FAMILY = ("humaneval", "humanevalplus")

#: the strategy every other is compared with, paired by task (the paper's method)
REFERENCE_STRATEGY = "ppo"

#: what ``promis-repro train --agent`` trains; each is also the strategy that uses its output
AGENTS = ("ppo", "lpo", "rl_rewriter", "self_correct_rl")
#: the one strategy that changes the generator's weights (a LoRA adapter over it): every other prompts it as it is
GENERATOR_TRAINING = ("self_correct_rl",)

#: test-time feedback modes (``strategies.feedback``); oracle is the leaky one
FEEDBACK_MODES = ("visible", "selfgen", "oracle")
LEAKY_FEEDBACK = "oracle"
#: directory suffix of the leaky oracle twin of a cell
ORACLE_VARIANT = "-oracle"

#: the protocols a results tree is run under: ours (honest: held-out training, visible feedback, ...) and the
#: paper's as a labelled ablation (config/paper-protocol.yaml; workflow_config checks what the label claims)
PROTOCOLS = ("ours", "paper")

#: the paper's numbering of the hybrid action space
ACTION_NAMES = {0: "direct", 1: "mutate", 2: "rewrite"}

#: the paper's generators in its order; other models follow alphabetically
MODEL_ORDER = ("codet5p-770m-py", "codellama-7b-instruct", "deepseek-coder-6.7b-instruct")

#: how tables and figures name benchmarks and strategies
BENCHMARK_LABELS = {"mbpp": "MBPP (test split)", "mbppplus": "MBPP+", "humanevalplus": "HumanEval+", "apps": "APPS"}
STRATEGY_LABELS = {
    "direct": "Direct (action 0)",
    "ga_once": "Genetic mutation (action 1, once)",
    "rewrite_once": "Semantic rewriting (action 2, once)",
    "ga_only": "GA only (action 1, budget)",
    "rewrite_only": "Rewrite only (action 2, budget)",
    "random_hybrid": "Random hybrid (10 steps)",
    "epic": "EPiC",
    "reflexion": "Reflexion",
    "ppo": "PPO agent (PROMIS)",
    "lpo": "LPO",
    "self_correct": "Self-correct",
    "self_correct_rl": "Self-correct RL (fine-tuned generator)",
    "rl_rewriter": "RL rewriter (GRPO)",
}

#: one cell's directory under the results root, and one trained agent's
CELL_TEMPLATE = "{model}/{benchmark}/{strategy}{variant}/seed{seed}"
AGENT_TEMPLATE = "agents/{agent}/{model}/seed{seed}"
#: a group job's staged cells (``group_cells: true``): every strategy of one model x benchmark x seed
GROUP_TEMPLATE = "groups/{model}/{benchmark}/seed{seed}{variant}"
#: a reviewer's cell (every seed of one model x benchmark x strategy) as its row of the tables
CELL_ROW_TEMPLATE = "cells/{model}/{benchmark}/{strategy}{variant}"
#: where a rule's ``benchmark:`` directive writes Snakemake's measurements of one job (wall seconds, memory),
#: by rule, relative to the results root: ``rules/common.smk`` (``benchmark_file``) and ``promis-repro cost`` read it
BENCHMARK_TEMPLATES = {
    "fetch_model": "benchmarks/models/{model}.tsv",
    "train_agent": f"benchmarks/train/{AGENT_TEMPLATE}.tsv",
    "run_cell": f"benchmarks/run/{CELL_TEMPLATE}.tsv",
    "run_group": f"benchmarks/{GROUP_TEMPLATE}.tsv",
    "evaluate_cell": f"benchmarks/evaluate/{CELL_TEMPLATE}.tsv",
}

#: the Snakefile's ``localrules``: rules run where Snakemake runs, never as cluster jobs (``promis-repro cost``
#: bills them as local; Snakemake's ``localrules:`` takes names only, so a test checks the Snakefile lists these)
LOCAL_RULES = ("all", "strategy_config")

#: top-level directories of a results tree that are not models
NOT_MODELS = (
    *("agents", "aggregate", "stats", "tables", "figures", "report", "data", "logs", "models", "config"),
    *("cells", "benchmarks", "groups"),
)


def _alternatives(names: tuple[str, ...] | list[str]) -> str:
    return "|".join(sorted(names, key=len, reverse=True))


#: the regular expression of every wildcard of the rules (set once, globally, in ``rules/common.smk``)
WILDCARD_CONSTRAINTS = {
    "model": r"[^/]+",
    "benchmark": _alternatives(BENCHMARKS),
    "strategy": _alternatives(STRATEGIES),
    "variant": f"|{ORACLE_VARIANT}",
    "agent": _alternatives(AGENTS),
    "seed": r"\d+",
}


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        from promis_repro.errors import UserError

        raise UserError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return protocol


def variant_of(feedback: str) -> str:
    """The directory suffix of a cell run under ``feedback``: only the oracle twin carries one."""
    return ORACLE_VARIANT if feedback == LEAKY_FEEDBACK else ""


def feedback_variants(feedback: str, oracle_variant: bool) -> list[tuple[str, str]]:
    """(feedback mode, directory suffix) of every variant of a cell: the configured mode, then the oracle twin."""
    return [(feedback, "")] + ([(LEAKY_FEEDBACK, ORACLE_VARIANT)] if oracle_variant else [])


def cell_path(model: str, benchmark: str, strategy: str, seed: int | str, variant: str = "") -> str:
    """A cell's directory relative to the results root."""
    return CELL_TEMPLATE.format(model=model, benchmark=benchmark, strategy=strategy, variant=variant, seed=seed)


def agent_path(agent: str, model: str, seed: int | str) -> str:
    """A trained agent's directory relative to the results root."""
    return AGENT_TEMPLATE.format(agent=agent, model=model, seed=seed)


def cell_dir(
    results: str | os.PathLike[str], model: str, benchmark: str, strategy: str, seed: int | str, variant: str = ""
) -> Path:
    return Path(results) / cell_path(model, benchmark, strategy, seed, variant)


def cell_glob() -> str:
    """``CELL_TEMPLATE`` as a glob over every cell of a results tree."""
    return CELL_TEMPLATE.format(model="*", benchmark="*", strategy="*", variant="", seed="*")


def base_strategy(name: str) -> str:
    """A cell directory's strategy without its variant suffix (``ppo-oracle`` -> ``ppo``)."""
    return name.removesuffix(ORACLE_VARIANT)


def strategy_rank(name: str) -> tuple[int, str]:
    """Sort key: the paper's order; oracle twins after their visible twin; unknown names last."""
    base = base_strategy(name)
    index = STRATEGIES.index(base) if base in STRATEGIES else len(STRATEGIES)
    return (2 * index + (base != name), name)


def model_rank(name: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), name)


#: the tables stage's table of this tree's cells beside another tree's (the other protocol)
PROTOCOL_COMPARISON = "protocol_comparison"


def table_names(
    benchmarks: list[str] | tuple[str, ...], feedback_modes: list[str] | tuple[str, ...], compare: bool = False
) -> list[str]:
    """The tables stage's outputs for a grid, ``tables/{name}.{md,tex,csv,html}`` (named before they exist)."""
    modes = sorted(set(feedback_modes))
    names = [f"{benchmark}_{feedback}" for benchmark in benchmarks for feedback in modes]
    if "apps" in benchmarks:
        names += [f"apps_difficulty_{feedback}" for feedback in modes]
    return [*names, "paper_vs_reproduced", *([PROTOCOL_COMPARISON] if compare else [])]


#: the leakage audit stage's table, ``tables/leakage_audit.{md,tex,csv,html}``
LEAKAGE_AUDIT = "leakage_audit"

#: the figures stage's outputs, ``figures/{name}.png`` and ``.pdf``
FIGURES = (
    "bars",
    "budget_curve",
    "ppo_learning",
    "actions_by_step",
    "cost_vs_pass",
    "apps_difficulty",
    "softpass_distribution",
    "levels",
)
