"""Check a pipeline config (``config/*.yaml``) before Snakemake plans a single job.

The JSON schema (``workflow/schemas/config.schema.yaml``) checks shapes; then every model name must
be in the registry and the ``strategy:`` section must parse as the commands will parse it. Each
problem is reported as one line naming the key, so a typo costs seconds, not a failed SLURM job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from promis_repro import grid
from promis_repro.errors import UserError
from promis_repro.settings import from_mapping

#: the ``train:`` key that sets each agent's length (``train --timesteps``: PPO timesteps, GRPO steps);
#: lpo's length is its ``strategy.lpo`` section
TRAINING_LENGTH_KEYS = {"ppo": "ppo_timesteps", "rl_rewriter": "rl_rewriter_steps"}


def training_length(config: dict[str, Any], agent: str) -> int | None:
    key = TRAINING_LENGTH_KEYS.get(agent)
    return None if key is None else config["train"][key]


def load_schema(schema_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config schema, with the grid's names (``grid``) as the enums of its list keys."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    properties = schema["properties"]
    properties["benchmarks"]["items"] = {"enum": list(grid.BENCHMARKS)}
    properties["strategies"]["items"] = {"enum": list(grid.STRATEGIES)}
    properties["feedback"] = {**properties["feedback"], "enum": list(grid.FEEDBACK_MODES)}
    return schema


def _schema_error(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> str | None:
    schema = load_schema(schema_path)
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(part) for part in error.absolute_path)
    return f"config key {key}: {error.message}" if key else f"config: {error.message}"


#: what ``protocol: paper`` claims (the public code's protocol); the config must say so, key by key
PAPER_PROTOCOL = (
    ("feedback", "oracle", "the paper's feedback is the hidden tests (leaky)"),
    ("strategy.reward.kind", "binary", "the public code's reward is +1/-0.1"),
    ("strategy.compose", False, "the public code applies each action to the original prompt"),
    ("strategy.ppo.policy", "shared", "the public code's actor-critic shares a 128-128 tanh trunk"),
    ("strategy.ppo.observation", "position", "the public code observes the dataset position"),
    ("strategy.ppo.truncation_is_terminal", True, "the public code's Monte-Carlo returns end at the step limit"),
    ("train.feedback", "all", "the public code trains on feedback and reward from all of a task's tests"),
)


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_paper_protocol(config: dict[str, Any]) -> None:
    """A config labelled ``protocol: paper`` must set every part of the paper's protocol."""
    if config.get("protocol", "ours") != "paper":
        return
    for key, wanted, why in PAPER_PROTOCOL:
        if _lookup(config, key) != wanted:
            raise UserError(f"config key {key}: protocol: paper needs {wanted!r} ({why}), got {_lookup(config, key)!r}")


def validate_pipeline_config(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> None:
    """Raise ``UserError`` (one line) for the first problem in ``config``; then fill in the optional keys' defaults."""
    from promis_repro.agent.grpo import GRPOSettings
    from promis_repro.agent.ppo import PPOConfig
    from promis_repro.generation.registry import get_model
    from promis_repro.strategies.config import parse_strategy_file

    message = _schema_error(config, schema_path)
    if message:
        raise UserError(message)
    # the optional keys' defaults, set here once so the rules read every key plainly
    config.setdefault("protocol", "ours")
    config.setdefault("oracle_variant", False)
    config.setdefault("compare_with", None)
    config["train"].setdefault("feedback", "visible")
    for key, names in (("generators", config["generators"]), ("rewriter", [config["rewriter"]])):
        for name in names:
            try:
                spec = get_model(name)
            except UserError as exc:
                raise UserError(f"config key {key}: {exc}") from None
            if spec.role == "embedder":
                raise UserError(f"config key {key}: {name} is an embedder, not a text generator")
    parsed = parse_strategy_file(config["strategy"], where="config key strategy")
    from_mapping(PPOConfig, parsed.sections["ppo"], "config key strategy.ppo")
    from_mapping(GRPOSettings, parsed.sections["grpo"], "config key strategy.grpo")
    check_paper_protocol(config)
