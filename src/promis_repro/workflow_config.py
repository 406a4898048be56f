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
from promis_repro.protocol import paper_protocol_problem
from promis_repro.settings import from_mapping

#: the ``train:`` key that sets each agent's length (``train --timesteps``: PPO timesteps, the TRL agents' steps);
#: lpo's length is its ``strategy.lpo`` section
TRAINING_LENGTH_KEYS = {
    "ppo": "ppo_timesteps",
    "rl_rewriter": "rl_rewriter_steps",
    "self_correct_rl": "self_correct_rl_steps",
}


def training_length(config: dict[str, Any], agent: str) -> int | None:
    key = TRAINING_LENGTH_KEYS.get(agent)
    return None if key is None else config["train"][key]


def task_limit(config: dict[str, Any], benchmark: str) -> int | None:
    """The first N tasks a cell of ``benchmark`` runs (None: all): the config's ``limit``, one number for every
    benchmark or a mapping from benchmark to number (a benchmark it leaves out runs all its tasks)."""
    limit = config.get("limit")
    return limit.get(benchmark) if isinstance(limit, dict) else limit


def grid_has(strategy: str, model: str) -> bool:
    """Whether the grid runs ``strategy`` with generator ``model``: every pair, except that a strategy which
    fine-tunes the generator (``grid.GENERATOR_TRAINING``) skips one it cannot fine-tune (the seq2seq CodeT5+)."""
    if strategy not in grid.GENERATOR_TRAINING:
        return True
    from promis_repro.agent.trl_agent import fine_tuning_problem
    from promis_repro.generation.registry import get_model

    return fine_tuning_problem(get_model(model)) is None


def load_schema(schema_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config schema, with the grid's names (``grid``) as the enums of its list keys."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    properties = schema["properties"]
    properties["benchmarks"]["items"] = {"enum": list(grid.BENCHMARKS)}
    properties["strategies"]["items"] = {"enum": list(grid.STRATEGIES)}
    properties["feedback"] = {**properties["feedback"], "enum": list(grid.FEEDBACK_MODES)}
    return schema


_YAML_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def typed_command_line_values(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` with strings read as YAML where the schema wants a number, a boolean or null.

    Snakemake reads ``--config seeds=[1,2]`` with YAML's BaseLoader, which leaves ``['1', '2']``: the
    items of lists and maps given on the command line arrive as strings. The schema says what each key
    holds, so a string is converted only where a string is not allowed and YAML reads the wanted type.
    """
    branches = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]  # a key may allow several shapes
    if isinstance(value, dict):
        properties, extra = {}, {}
        for branch in branches:
            properties.update(branch.get("properties", {}))
            if isinstance(branch.get("additionalProperties"), dict):
                extra = branch["additionalProperties"]
        return {key: typed_command_line_values(item, properties.get(key, extra)) for key, item in value.items()}
    if isinstance(value, list):
        items = next((branch["items"] for branch in branches if "items" in branch), {})
        return [typed_command_line_values(item, items) for item in value]
    types = []
    for branch in branches:
        declared = branch.get("type", [])
        types += [declared] if isinstance(declared, str) else declared
    if not isinstance(value, str) or "string" in types or any("enum" in branch for branch in branches):
        return value
    wanted = tuple(_YAML_TYPES[name] for name in types if name in _YAML_TYPES)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    is_wanted = isinstance(parsed, wanted) and not (isinstance(parsed, bool) and bool not in wanted)
    return parsed if wanted and is_wanted else value


def _schema_error(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> str | None:
    schema = load_schema(schema_path)
    config.update(typed_command_line_values(config, schema))
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(part) for part in error.absolute_path)
    return f"config key {key}: {error.message}" if key else f"config: {error.message}"


def validate_pipeline_config(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> None:
    """Raise ``UserError`` (one line) for the first problem in ``config``; then fill in the optional keys' defaults."""
    from promis_repro.agent.grpo import GRPOSettings
    from promis_repro.agent.ppo import PPOConfig
    from promis_repro.agent.self_correct_rl import SelfCorrectRLSettings
    from promis_repro.generation.registry import get_model
    from promis_repro.strategies.config import parse_strategy_file

    message = _schema_error(config, schema_path)
    if message:
        raise UserError(message)
    # the optional keys' defaults, set here once so the rules read every key plainly
    config.setdefault("protocol", "ours")
    config.setdefault("oracle_variant", False)
    config.setdefault("group_cells", False)
    config.setdefault("compare_with", None)
    config.setdefault("allow_weak_sandbox", False)
    config.setdefault("container", "promis-repro.sif")
    config["train"].setdefault("feedback", "visible")
    if isinstance(config.get("limit"), dict):
        unknown = sorted(set(config["limit"]) - set(config["benchmarks"]))
        if unknown:
            raise UserError(f"config key limit: {', '.join(unknown)} is not one of the config's benchmarks")
    for key, names in (("generators", config["generators"]), ("rewriter", [config["rewriter"]])):
        for name in names:
            try:
                spec = get_model(name)
            except UserError as exc:
                raise UserError(f"config key {key}: {exc}") from None
            if spec.role == "embedder":
                raise UserError(f"config key {key}: {name} is an embedder, not a text generator")
    parsed = parse_strategy_file(config["strategy"], where="config key strategy")
    ppo = from_mapping(PPOConfig, parsed.sections["ppo"], "config key strategy.ppo")
    from_mapping(GRPOSettings, parsed.sections["grpo"], "config key strategy.grpo")
    from_mapping(SelfCorrectRLSettings, parsed.sections["self_correct_rl"], "config key strategy.self_correct_rl")
    if config["protocol"] == "paper":  # the label must be true, part by part
        problem = paper_protocol_problem(
            feedback=config["feedback"], strategy=parsed, ppo=ppo, train_feedback=config["train"]["feedback"]
        )
        if problem:
            raise UserError(f"config key {problem}")
