"""Train stage: an agent (ppo, lpo, rl_rewriter) on the decontaminated MBPP train pool -> ``training.json``.

The agent's own files (policy, checkpoints, curves; the lpo state; the LoRA adapter) go into ``out``
beside ``training.json``, which records the pools' sizes, the reward, the agent's result and provenance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promis_repro import grid
from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json
from promis_repro.provenance import provenance
from promis_repro.settings import from_mapping
from promis_repro.strategies.config import StrategyFile, load_strategy_file


@dataclass(frozen=True)
class _Run:
    """What every agent's training gets: the settings file, models, tools, the pools and where to write."""

    settings: StrategyFile
    models: Any  # strategies.runner.Models
    tools: Any  # strategies.actions.Tools
    train: list[Any]  # tasks of the train pool
    selection: list[Any]  # tasks of the selection pool
    out: Path


def _lpo(run: _Run, timesteps: int | None, where: str) -> tuple[dict[str, Any], str]:
    from promis_repro.strategies.lpo import optimize_instruction

    del timesteps, where  # lpo's length is its lpo: section (batches, epochs)
    state = optimize_instruction(
        run.tools, run.models.call, run.train, run.selection, run.out, settings=run.settings.config.lpo
    )
    result = {
        "instruction": state["best_instruction"] or state["instruction"],
        "selection_soft_pass": state["best_score"],
        "cost": state.get("cost"),
    }
    return result, f"lpo: best instruction (selection SoftPass {state['best_score']:.3f})"


def _ppo(run: _Run, timesteps: int | None, where: str) -> tuple[dict[str, Any], str]:
    from promis_repro.agent.ppo import PPOConfig, train_ppo

    values = dict(run.settings.sections["ppo"])
    if timesteps is not None:
        values["total_timesteps"] = timesteps
    config = from_mapping(PPOConfig, values, f"{where}: ppo")
    result = train_ppo(run.tools, run.models.call, run.train, run.selection, run.out, config)
    best = result["best"] or {}
    message = f"ppo: {result['timesteps']} timesteps, best selection SoftPass {best.get('soft_pass', 0):.3f}"
    return {"ppo_config": asdict(config), **result}, message


def _rl_rewriter(run: _Run, timesteps: int | None, where: str) -> tuple[dict[str, Any], str]:
    from promis_repro.agent.grpo import GRPOSettings, train_rl_rewriter
    from promis_repro.generation.weights import weights_location

    values = dict(run.settings.sections["grpo"])
    if timesteps is not None:
        values["max_steps"] = timesteps
    settings = from_mapping(GRPOSettings, values, f"{where}: grpo")
    location, _ = weights_location(run.models.rewriter.spec)
    result = train_rl_rewriter(run.tools, run.models.call, location, run.train, run.out, settings)
    summary = {
        "grpo_settings": asdict(settings),
        "steps": result["steps"],
        "mean_reward_first": result["mean_reward_first"],
        "mean_reward_last": result["mean_reward_last"],
    }
    return summary, f"rl_rewriter: {result['steps']} GRPO steps, adapter in {result['adapter']}"


TRAINERS: dict[str, Callable[[_Run, int | None, str], tuple[dict[str, Any], str]]] = {
    "ppo": _ppo,
    "lpo": _lpo,
    "rl_rewriter": _rl_rewriter,
}
if tuple(TRAINERS) != grid.AGENTS:  # every agent of the grid, and only those, can be trained
    raise RuntimeError(f"trainers {tuple(TRAINERS)} differ from grid.AGENTS {grid.AGENTS}")


def train(
    *,
    agent: str,
    model: str,
    rewriter: str | None,
    seed: int,
    out: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    pools: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    selection_limit: int | None = None,
    config_path: str | None = None,
    budget: int | None = None,
    timesteps: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Train ``agent`` (``timesteps``: PPO timesteps or GRPO steps) and write ``out/training.json``."""
    from promis_repro.data.pools import load_pool
    from promis_repro.strategies.actions import Tools
    from promis_repro.strategies.runner import Models

    if agent not in TRAINERS:
        raise UserError(f"unknown agent {agent!r}; known: {', '.join(TRAINERS)}")
    # ppo's action 2 and lpo's debugger/optimizer prompts call the rewriter; rl_rewriter trains it
    if rewriter is None:
        raise UserError(f"agent {agent} needs a rewriter model (--rewriter)")
    settings = load_strategy_file(config_path, budget=budget, max_new_tokens=max_new_tokens)
    config, reward = settings.config, settings.reward
    train_tasks = load_pool("train_pool", data_dir, pools)[:limit]
    selection = load_pool("selection_pool", data_dir, pools)[:selection_limit]
    models = Models(model, rewriter, batch_size=batch_size)
    tools = Tools(models.generator.spec, models.rewriter.spec if models.rewriter else None, config, reward, seed)
    out = Path(out)
    result, message = TRAINERS[agent](
        _Run(settings, models, tools, train_tasks, selection, out), timesteps, config_path or "config"
    )
    run_config: dict[str, Any] = {
        "command": "train",
        "agent": agent,
        "model": model,
        "rewriter": rewriter,
        "seed": seed,
        "strategy_config": config.as_dict(),
        "reward": reward.as_dict(),
        "limit": limit,
        "selection_limit": selection_limit,
        **settings.sections,
    }
    model_ids = {"generator": models.generator.model_id}
    if models.rewriter is not None:
        model_ids["rewriter"] = models.rewriter.model_id
    summary: dict[str, Any] = {
        "agent": agent,
        "n_train": len(train_tasks),
        "n_selection": len(selection),
        "reward": reward.as_dict(),
        **result,
    }
    summary["provenance"] = provenance(
        config=run_config, data_hashes={"mbpp": train_tasks[0].source_hash}, model=model_ids, seed=seed
    )
    atomic_write_json(out / "training.json", summary)
    print(f"{message} -> {out}")
    return summary
