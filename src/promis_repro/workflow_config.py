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

from promis_repro.errors import UserError


def _schema_error(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> str | None:
    schema = yaml.safe_load(Path(schema_path).read_text())
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(part) for part in error.absolute_path)
    return f"config key {key}: {error.message}" if key else f"config: {error.message}"


def validate_pipeline_config(config: dict[str, Any], schema_path: str | os.PathLike[str]) -> None:
    """Raise ``UserError`` (one line) for the first problem in ``config``."""
    from promis_repro.agent.grpo import GRPOSettings
    from promis_repro.agent.ppo import PPOConfig
    from promis_repro.generation.registry import get_model
    from promis_repro.strategies.config import parse_strategy_file

    message = _schema_error(config, schema_path)
    if message:
        raise UserError(message)
    for key, names in (("generators", config["generators"]), ("rewriter", [config["rewriter"]])):
        for name in names:
            try:
                spec = get_model(name)
            except UserError as exc:
                raise UserError(f"config key {key}: {exc}") from None
            if spec.role == "embedder":
                raise UserError(f"config key {key}: {name} is an embedder, not a text generator")
    parsed = parse_strategy_file(config["strategy"], where="config key strategy")
    PPOConfig.from_mapping(parsed.sections["ppo"], where="config key strategy.ppo")
    GRPOSettings.from_mapping(parsed.sections["grpo"], where="config key strategy.grpo")
