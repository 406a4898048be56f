"""Train stage: an agent (``grid.AGENTS``) on the decontaminated MBPP train pool -> ``training.json``.

The agent's own files (policy, checkpoints, curves; the lpo state; the LoRA adapters) go into ``out``
beside ``training.json``, which records the pools' sizes, the reward, the agent's result and provenance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from promis_repro import grid
from promis_repro.agent.checkpoints import discard_checkpoints
from promis_repro.errors import UserError
from promis_repro.grid import check_protocol
from promis_repro.io import atomic_write_json, sha256_of
from promis_repro.protocol import paper_protocol_problem
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
    train_feedback: str  # strategies.feedback.TRAIN_FEEDBACK_MODES
    no_visible_fraction: float  # the evaluated benchmarks' share of tasks without a visible test
    protocol: str  # grid.PROTOCOLS
    batch_size: int = 32  # the generation backend's (self_correct_rl's selection runs the strategy as at test time)


def _lpo(run: _Run, timesteps: int | None, where: str) -> tuple[dict[str, Any], str]:
    from promis_repro.strategies.lpo import optimize_instruction

    del timesteps, where  # lpo's length is its lpo: section (batches, epochs)
    state = optimize_instruction(
        run.tools,
        run.models.call,
        run.train,
        run.selection,
        run.out,
        settings=run.settings.config.lpo,
        train_feedback=run.train_feedback,
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
    problem = paper_protocol_problem(ppo=config) if run.protocol == "paper" else None
    if problem:
        raise UserError(f"--protocol paper, but {problem}")
    if config.no_visible_fraction is None:  # as many as the evaluated benchmarks have (none shown under "all")
        share = run.no_visible_fraction if run.train_feedback == "visible" else 0.0
        config = replace(config, no_visible_fraction=round(share, 6))
    result = train_ppo(
        run.tools, run.models.call, run.train, run.selection, run.out, config, train_feedback=run.train_feedback
    )
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
    location, revision = weights_location(run.models.rewriter.spec)
    result = train_rl_rewriter(
        run.tools,
        run.models.call,
        location,
        run.train,
        run.out,
        settings,
        train_feedback=run.train_feedback,
        revision=revision,
    )
    summary = {
        "grpo_settings": asdict(settings),
        "steps": result["steps"],
        "mean_reward_first": result["mean_reward_first"],
        "mean_reward_last": result["mean_reward_last"],
    }
    return summary, f"rl_rewriter: {result['steps']} GRPO steps, adapter in {result['adapter']}"


def _self_correct_rl(run: _Run, timesteps: int | None, where: str) -> tuple[dict[str, Any], str]:
    from promis_repro.agent.self_correct_rl import SelfCorrectRLSettings, check_trainable, train_self_correct_rl
    from promis_repro.generation.weights import weights_location

    values = dict(run.settings.sections["self_correct_rl"])
    if timesteps is not None:
        values["max_steps"] = timesteps
    settings = from_mapping(SelfCorrectRLSettings, values, f"{where}: self_correct_rl")
    check_trainable(run.models.generator.spec)  # before its weights are fetched
    location, revision = weights_location(run.models.generator.spec)
    result = train_self_correct_rl(
        run.tools,
        location,
        revision,
        run.train,
        run.selection,
        run.out,
        settings,
        train_feedback=run.train_feedback,
        batch_size=run.batch_size,
    )
    keys = ("fine_tunes", "formula", "steps", "mean_reward_first", "mean_reward_last", "selection")
    summary = {key: result[key] for key in keys}
    summary["selected_step"] = result["selection"]["selected_step"]
    summary["selection_soft_pass"] = result["selection"]["selection_soft_pass"]
    summary["self_correct_rl_settings"] = asdict(settings)
    message = (
        f"self_correct_rl: {result['steps']} training steps, selected step {summary['selected_step']} "
        f"(selection SoftPass {summary['selection_soft_pass']:.3f}), generator adapter in {result['adapter']}"
    )
    return summary, message


TRAINERS: dict[str, Callable[[_Run, int | None, str], tuple[dict[str, Any], str]]] = {
    "ppo": _ppo,
    "lpo": _lpo,
    "rl_rewriter": _rl_rewriter,
    "self_correct_rl": _self_correct_rl,
}
if tuple(TRAINERS) != grid.AGENTS:  # every agent of the grid, and only those, can be trained
    raise RuntimeError(f"trainers {tuple(TRAINERS)} differ from grid.AGENTS {grid.AGENTS}")


def _pool_files(pools: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    from promis_repro.data.pools import POOL_NAMES, default_pools_dir

    directory = Path(pools) if pools is not None else default_pools_dir(data_dir)
    return [directory / f"{name}.jsonl" for name in POOL_NAMES]


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
    train_feedback: str = "visible",
    eval_benchmarks: list[str] | None = None,
    protocol: str = "ours",
) -> dict[str, Any]:
    """Train ``agent`` (``timesteps``: PPO timesteps or the TRL agents' steps) and write ``out/training.json``.

    ``train_feedback``: ``visible`` trains under test-time conditions (feedback from the visible test
    only, reward from the held-out tests), ``all`` the paper's way. ``eval_benchmarks``: the benchmarks
    the agent will be evaluated on (default: the paper's); PPO presents as many training episodes
    without a visible test as their share of such tasks.
    """
    from promis_repro.data.pools import load_pool
    from promis_repro.data.registry import evaluation_tasks
    from promis_repro.data.split import DECONTAMINATED_BENCHMARKS
    from promis_repro.strategies.actions import Tools
    from promis_repro.strategies.feedback import check_train_feedback, no_visible_share
    from promis_repro.strategies.registry import get_strategy
    from promis_repro.strategies.runner import Models

    if agent not in TRAINERS:
        raise UserError(f"unknown agent {agent!r}; known: {', '.join(TRAINERS)}")
    # ppo's action 2 and lpo's debugger/optimizer prompts call the rewriter; rl_rewriter trains it
    if not get_strategy(agent).uses_rewriter:
        rewriter = None  # self_correct_rl trains the generator alone; recorded as unused
    elif rewriter is None:
        raise UserError(f"agent {agent} needs a rewriter model (--rewriter)")
    check_train_feedback(train_feedback)
    check_protocol(protocol)
    settings = load_strategy_file(config_path, budget=budget, max_new_tokens=max_new_tokens)
    problem = paper_protocol_problem(strategy=settings, train_feedback=train_feedback) if protocol == "paper" else None
    if problem:
        raise UserError(f"--protocol paper, but {problem}")
    benchmarks = list(eval_benchmarks or DECONTAMINATED_BENCHMARKS)
    share = no_visible_share([t for b in benchmarks for t in evaluation_tasks(b, data_dir)])
    config, reward = settings.config, settings.reward
    train_tasks = load_pool("train_pool", data_dir, pools)[:limit]
    selection = load_pool("selection_pool", data_dir, pools)[:selection_limit]
    models = Models(model, rewriter, batch_size=batch_size)
    tools = Tools(models.generator.spec, models.rewriter.spec if models.rewriter else None, config, reward, seed)
    out = Path(out)
    run = _Run(settings, models, tools, train_tasks, selection, out, train_feedback, share, protocol, batch_size)
    result, message = TRAINERS[agent](run, timesteps, config_path or "config")
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
        "train_feedback": train_feedback,
        "eval_benchmarks": benchmarks,
        "protocol": protocol,
        **settings.sections,
    }
    model_ids = {"generator": models.generator.model_id}
    if models.rewriter is not None:
        model_ids["rewriter"] = models.rewriter.model_id
    summary: dict[str, Any] = {
        "agent": agent,
        "protocol": protocol,
        "n_train": len(train_tasks),
        "n_selection": len(selection),
        # what the agent saw, for the report's leakage audit
        "train_ids": [t.task_id for t in train_tasks],
        "selection_ids": [t.task_id for t in selection],
        "reward": reward.as_dict(),
        "train_feedback": train_feedback,
        # the evaluated tasks' share without a visible test, pooled over the benchmarks (used under "visible")
        "no_visible_share": {"benchmarks": benchmarks, "share": share, "used": train_feedback == "visible"},
        **result,
    }
    pool_hashes = {f"pools/{p.name}": sha256_of(p) for p in _pool_files(pools, data_dir)}
    summary["provenance"] = provenance(
        config=run_config, data_hashes={"mbpp": train_tasks[0].source_hash} | pool_hashes, model=model_ids, seed=seed
    )
    atomic_write_json(out / "training.json", summary)
    discard_checkpoints(out)  # only an interrupted run resumes; a finished one trained again starts afresh
    print(f"{message} -> {out}")
    return summary
