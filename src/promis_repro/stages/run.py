"""Run stage: one strategy on one benchmark with one generator and seed -> the cell's samples, trajectories, cost.

``samples.jsonl`` is in the evaluator's format (the evaluate stage scores it on the hidden tests),
``trajectories.jsonl`` has one row per step, ``cost.json`` the calls, tokens and model seconds per
task and in total, the budget, the reward formula, the feedback mode and provenance.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promis_repro.errors import UserError
from promis_repro.grid import LEAKY_FEEDBACK, check_protocol
from promis_repro.io import atomic_write_json, atomic_write_jsonl

if TYPE_CHECKING:  # the runner imports the model stack; a group's adopting cell job never needs it
    from promis_repro.strategies.runner import StrategyRun

#: the arguments of ``run`` that decide its outputs (``stages.group.run_request``: a staged cell answers them)
RUN_REQUEST_KEYS = (
    *("strategy", "model", "rewriter", "benchmark", "seed", "feedback", "limit", "data_dir", "pools"),
    *("config_path", "budget", "max_new_tokens", "trained_dir", "batch_size", "protocol"),
)


def run(
    *,
    strategy: str,
    model: str,
    rewriter: str | None,
    benchmark: str,
    seed: int,
    feedback: str,
    out: str | os.PathLike[str],
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    pools: str | os.PathLike[str] | None = None,
    config_path: str | None = None,
    budget: int | None = None,
    max_new_tokens: int | None = None,
    trained_dir: str | None = None,
    batch_size: int = 32,
    protocol: str = "ours",
    quiet: bool = False,
    adopt: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write ``samples.jsonl``, ``trajectories.jsonl`` and ``cost.json`` into ``out``; returns the cost record.

    ``pools``: what ``data split`` wrote (default: the cached default pools); a task the agents trained
    or were selected on is refused before anything runs (``data/leakage.py``). ``config_path``: a
    strategy settings file; ``budget``/``max_new_tokens`` override it. ``trained_dir``: what ``train``
    wrote, for the strategies that need it. ``protocol``: the label of the run's protocol (``grid.PROTOCOLS``),
    carried into every output. ``quiet``: progress lines go to the log file only. ``adopt``: a group job's
    staged cell (``stages/group.py``), taken instead of running when it answered this very request.
    """
    # the request's arguments are prepare_run's parameters, once (an adopted cell is checked against them)
    given = dict(locals())
    arguments = {key: given[key] for key in RUN_REQUEST_KEYS}
    if adopt:
        from promis_repro.stages.group import REQUEST, RUN_FILES, adopt_staged, run_request

        if adopt_staged(adopt, out, REQUEST, run_request(**arguments), RUN_FILES):
            print(f"{strategy} / {model} on {benchmark}, seed {seed}: taken from its group's run ({adopt}) -> {out}")
            return json.loads((Path(out) / "cost.json").read_text())
    prepared = prepare_run(**arguments)
    from promis_repro.strategies.runner import run_together

    started = time.perf_counter()
    trajectories, suites = run_together({strategy: prepared.strategy_run}, progress=not quiet)[strategy]
    return write_run(prepared, trajectories, suites, out, wall=time.perf_counter() - started)


@dataclass
class PreparedRun:
    """A run checked and set up (tasks, leakage check, agent, models, its episodes), not yet driven."""

    arguments: dict[str, Any]  # strategy, model, rewriter (None when unused), benchmark, seed, ...
    config: Any  # strategies.config.StrategyConfig
    reward: Any  # rewards.RewardConfig
    tasks: list[Any]
    training_side: Any  # data.leakage.TrainingSide
    models: Any  # strategies.runner.Models
    strategy_run: StrategyRun


def prepare_run(
    *,
    strategy: str,
    model: str,
    rewriter: str | None,
    benchmark: str,
    seed: int,
    feedback: str,
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    pools: str | os.PathLike[str] | None = None,
    config_path: str | None = None,
    budget: int | None = None,
    max_new_tokens: int | None = None,
    trained_dir: str | None = None,
    batch_size: int = 32,
    protocol: str = "ours",
) -> PreparedRun:
    """Everything ``run`` checks and loads before its episodes are driven (see ``run``); raises
    ``UserError`` for a bad request before any model call."""
    from promis_repro.agent.trained import load_trained
    from promis_repro.agent.trl_agent import adapter_spec
    from promis_repro.data.leakage import TrainingSide
    from promis_repro.data.registry import evaluation_tasks
    from promis_repro.generation.registry import get_model
    from promis_repro.protocol import paper_protocol_problem
    from promis_repro.strategies.config import load_strategy_file
    from promis_repro.strategies.feedback import check_mode
    from promis_repro.strategies.registry import get_strategy
    from promis_repro.strategies.runner import Models, start_strategy

    spec = get_strategy(strategy)
    check_mode(feedback)
    check_protocol(protocol)
    settings = load_strategy_file(config_path, budget=budget, max_new_tokens=max_new_tokens)
    config, reward = settings.config, settings.reward
    problem = paper_protocol_problem(feedback=feedback, strategy=settings) if protocol == "paper" else None
    if problem:
        raise UserError(f"--protocol paper, but {problem}")
    tasks = evaluation_tasks(benchmark, data_dir)[:limit]
    if not tasks:
        raise UserError(f"benchmark {benchmark} has no tasks to run (limit {limit})")
    training_side = TrainingSide.load(pools, data_dir)
    training_side.check(benchmark, tasks)
    trained = load_trained(strategy, trained_dir) if spec.trained else None
    if not spec.uses_rewriter:
        rewriter = None  # recorded as unused
    rewriter_spec = generator_spec = None
    if spec.rewriter_adapter:
        if rewriter is None:
            raise UserError(f"strategy {strategy} needs the base rewriter model (--rewriter)")
        rewriter_spec = adapter_spec(get_model(rewriter), trained_dir, strategy)
    if spec.generator_adapter:  # the generator itself was fine-tuned (self_correct_rl)
        generator_spec = adapter_spec(get_model(model), trained_dir, strategy)
    models = Models(model, rewriter, batch_size=batch_size, rewriter_spec=rewriter_spec, generator_spec=generator_spec)
    strategy_run = start_strategy(
        strategy, tasks, models, seed=seed, feedback=feedback, config=config, reward=reward, trained=trained
    )
    arguments = {
        **{"strategy": strategy, "model": model, "rewriter": rewriter, "benchmark": benchmark, "seed": seed},
        **{"feedback": feedback, "protocol": protocol, "limit": limit, "trained_dir": trained_dir},
    }
    return PreparedRun(arguments, config, reward, tasks, training_side, models, strategy_run)


def write_run(
    prepared: PreparedRun,
    trajectories: list[Any],
    suites: dict[str, Any],
    out: str | os.PathLike[str],
    *,
    wall: float | None,
) -> dict[str, Any]:
    """The cell's files from a driven run; ``wall`` None: the run shared its batches with other strategies
    (a group job), so its wall time is its share of the model's time."""
    from promis_repro.provenance import provenance

    a = prepared.arguments
    strategy, model, rewriter, benchmark, seed = a["strategy"], a["model"], a["rewriter"], a["benchmark"], a["seed"]
    feedback, protocol, limit, trained_dir = a["feedback"], a["protocol"], a["limit"], a["trained_dir"]
    config, reward, tasks, models = prepared.config, prepared.reward, prepared.tasks, prepared.models
    training_side = prepared.training_side
    leaky = feedback == LEAKY_FEEDBACK
    samples, steps, per_task = [], [], {}
    for task, trajectory in zip(tasks, trajectories, strict=True):
        samples.append(
            {
                "task_id": task.task_id,
                "solution": trajectory.final_code,
                "strategy": strategy,
                "seed": seed,
                "feedback": feedback,
                "leaky": leaky,
                "final_candidate": trajectory.final_step,
                "feedback_fitness": trajectory.final_fitness,
                "feedback_tests": suites[task.task_id].n_tests,
            }
        )
        for step in trajectory.steps:
            steps.append({**step, "seed": seed, "feedback_mode": feedback, "leaky": leaky})
        per_task[task.task_id] = {**trajectory.ledger.as_dict(), "steps": len(trajectory.steps), **trajectory.info}
    totals: dict[str, Any] = {"generator_calls": 0, "rewriter_calls": 0, "tokens": 0, "model_seconds": 0.0}
    for entry in per_task.values():
        totals["generator_calls"] += entry["generator_calls"]
        totals["rewriter_calls"] += entry["rewriter_calls"]
        totals["tokens"] += entry["tokens"]
        totals["model_seconds"] += sum(entry["model_seconds"].values())
    run_config = {
        "command": "run",
        "strategy": strategy,
        "model": model,
        "rewriter": rewriter,
        "benchmark": benchmark,
        "seed": seed,
        "feedback": feedback,
        "protocol": protocol,
        "limit": limit,
        "strategy_config": config.as_dict(),
        "reward": reward.as_dict(),
        **({"options": {"trained": str(trained_dir)}} if trained_dir else {}),
    }
    model_ids = {"generator": models.generator.model_id}
    if models.rewriter is not None:
        model_ids["rewriter"] = models.rewriter.model_id
    cost = {
        "strategy": strategy,
        "benchmark": benchmark,
        "feedback": feedback,
        "leaky": leaky,
        "protocol": protocol,
        "n_tasks": len(tasks),
        "budget": {"generator_calls": config.max_generator_calls, "rewriter_calls": config.max_rewriter_calls},
        "reward": reward.as_dict(),
        "totals": totals,
        "mean_per_task": {k: v / len(tasks) for k, v in totals.items()},
        # shared batches: no wall time of its own; its model seconds are its share
        "wall_seconds": round(totals["model_seconds"] if wall is None else wall, 3),
        "wall_shared": wall is None,
        "per_task": per_task,
        "pools": training_side.hashes,
        "provenance": provenance(
            config=run_config,
            data_hashes={benchmark: tasks[0].source_hash} | {f"pools/{k}": v for k, v in training_side.hashes.items()},
            model=model_ids,
            seed=seed,
        ),
    }
    out = Path(out)
    # samples.jsonl marks a complete run: drop an old one first, so a crash below never pairs it with new files
    (out / "samples.jsonl").unlink(missing_ok=True)
    atomic_write_jsonl(out / "trajectories.jsonl", steps)
    atomic_write_json(out / "cost.json", cost)
    # samples last: its presence marks a complete run
    atomic_write_jsonl(out / "samples.jsonl", samples)
    totals_line = f"{totals['generator_calls']} generator + {totals['rewriter_calls']} rewriter calls"
    leaky_note = " (oracle feedback: LEAKY)" if leaky else ""
    print(
        f"{strategy} / {model} on {benchmark}, seed {seed}, feedback {feedback}{leaky_note}: "
        f"{len(tasks)} tasks, {totals_line} -> {out}"
    )
    return cost
