"""Group stage: every strategy of one model x benchmark x seed in one process, each into a staged cell.

Why: on a CPU a job's start-up (imports, tokenizer and model load: ~6 s) costs more than a tiny cell's
work, and a grid has hundreds of cells. A group job loads the models once (``shared_backends``) and runs
each strategy, then its evaluation, into ``{staging}/{strategy}/``: a complete cell directory plus the
request it answered (``request.json``) and what its evaluation scored (``evaluated.json``).

``run_cell`` and ``evaluate_cell`` then *adopt* a staged cell (move its files into the cell) only when
their own request is the staged one, file hashes included; otherwise they run alone. So every cell
keeps its own outputs, a one-cell rerun is a real rerun (its staged files were moved away), and a stale
or half-written staging directory is never taken for a result.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import traceback
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_json, sha256_of

log = logging.getLogger(__name__)

#: a cell's run outputs, in the order they are moved (samples last: its presence marks a complete run)
RUN_FILES = ("trajectories.jsonl", "cost.json", "samples.jsonl")
#: a cell's evaluation outputs (metrics last, as evaluate_cell writes them)
EVALUATION_FILES = ("results.jsonl", "candidates.jsonl", "metrics.json")
REQUEST = "request.json"
EVALUATED = "evaluated.json"


def file_hash(path: str | os.PathLike[str] | None) -> str | None:
    """sha256 of a file a request depends on (None when the request names none or it is missing: a run
    cannot have answered such a request, it fails on the missing file first)."""
    return sha256_of(Path(path)) if path and Path(path).is_file() else None


def run_request(**arguments: Any) -> dict[str, Any]:
    """What determines a run's outputs: its arguments with the files they name replaced by their hashes.

    ``arguments``: ``stages.run.RUN_REQUEST_KEYS``; ``trained_dir`` is hashed through
    the ``training.json`` it holds (the agent's own record of its weights).
    """
    request = dict(arguments)
    request["config_path"] = file_hash(arguments.get("config_path"))
    pools = arguments.get("pools")
    request["pools"] = file_hash(Path(pools) / "decontamination.json") if pools else None
    trained = arguments.get("trained_dir")
    request["trained_dir"] = file_hash(Path(trained) / "training.json") if trained else None
    request["data_dir"] = _resolved(arguments.get("data_dir"))
    return request


def _resolved(data_dir: str | os.PathLike[str] | None) -> str | None:
    """The data directory as an absolute path (a cell and its group may name it from different places)."""
    return str(Path(data_dir).resolve()) if data_dir else None


def evaluation_request(cell: Path, benchmark: str, data_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What determines a cell's evaluation: the benchmark, its data and the run files it scores."""
    return {
        "benchmark": benchmark,
        "data_dir": _resolved(data_dir),
        **{name: sha256_of(cell / name) if (cell / name).is_file() else None for name in RUN_FILES},
    }


def adopt_staged(
    staged: str | os.PathLike[str] | None, cell: str | os.PathLike[str], record: str, want: Any, files: tuple[str, ...]
) -> bool:
    """Move ``files`` from the staged cell into ``cell`` if the staged ``record`` says it answered ``want``.

    False (nothing moved) when there is no staged cell, its record differs, or a file is missing.
    """
    if not staged:
        return False
    staged = Path(staged)
    try:
        recorded = json.loads((staged / record).read_text())
    except (OSError, ValueError):
        return False
    if recorded != want or not all((staged / name).is_file() for name in files):
        return False
    cell = Path(cell)
    cell.mkdir(parents=True, exist_ok=True)
    for name in files:
        os.replace(staged / name, cell / name)
    (staged / record).unlink(missing_ok=True)  # spent: a later rerun of this cell runs alone
    return True


def run_group(
    *,
    strategies: list[str],
    model: str,
    rewriter: str | None,
    benchmark: str,
    seed: int,
    feedback: str,
    out: str | os.PathLike[str],
    trained: list[str] | None = None,
    cell_names: list[str] | None = None,
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    pools: str | os.PathLike[str] | None = None,
    config_path: str | None = None,
    budget: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    protocol: str = "ours",
    quiet: bool = False,
) -> dict[str, Any]:
    """Run and evaluate each strategy into ``{out}/{strategy}/``; write ``{out}/group.json`` last.

    ``trained``: ``STRATEGY=DIR`` for the strategies that need a trained agent. ``cell_names``:
    ``STRATEGY=PATH``, the cell each staged one is for (recorded in its metrics' provenance). A strategy
    that fails is logged and listed as failed; its cell then runs alone and reports its own error.
    """
    from promis_repro.generation.service import shared_backends
    from promis_repro.provenance import provenance
    from promis_repro.stages.run import RUN_REQUEST_KEYS

    trained_dirs = _pairs(trained, "--trained")
    names = _pairs(cell_names, "--cell-names")
    shared = {
        **{"model": model, "rewriter": rewriter, "benchmark": benchmark, "seed": seed, "feedback": feedback},
        **{"limit": limit, "data_dir": data_dir, "pools": pools, "config_path": config_path},
        **{"budget": budget, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "protocol": protocol},
    }
    requests = {}
    for strategy in strategies:
        given = {"strategy": strategy, "trained_dir": trained_dirs.get(strategy), **shared}
        requests[strategy] = {key: given.get(key) for key in RUN_REQUEST_KEYS}
    staging = Path(out)
    (staging / "group.json").unlink(missing_ok=True)
    for strategy in strategies:
        shutil.rmtree(staging / strategy, ignore_errors=True)
        (staging / strategy).mkdir(parents=True)
    with shared_backends():
        outcome = _run_together(requests, staging, quiet)
        for strategy in strategies:
            if strategy not in outcome:  # the shared run failed: each runs alone, as its cell would
                outcome[strategy] = _run_alone(strategy, requests[strategy], staging, quiet)
        for strategy in strategies:
            if outcome[strategy] == "ran":
                outcome[strategy] = _evaluate(strategy, requests[strategy], staging, names.get(strategy))
    record = {
        "model": model,
        "benchmark": benchmark,
        "seed": seed,
        "feedback": feedback,
        "strategies": outcome,
        "provenance": provenance(
            config={"command": "run-group", "strategies": strategies, "limit": limit, "protocol": protocol},
            data_hashes={},  # each staged cell records its own (benchmark, pools)
            seed=seed,
            model={"generator": model, "rewriter": rewriter},
        ),
    }
    atomic_write_json(staging / "group.json", record)
    staged = sum(value == "staged" for value in outcome.values())
    print(f"group {model}/{benchmark}/seed {seed}: {staged} of {len(strategies)} strategies staged -> {staging}")
    return record


def _run_together(requests: dict[str, dict[str, Any]], staging: Path, quiet: bool) -> dict[str, str]:
    """Every strategy that sets up without error, driven as one run (``runner.run_together``: their requests
    share the model's batches); each cell's run files written. ``{strategy: "ran" | "failed: ..."}``; none
    of the prepared strategies is in it when the shared run itself failed."""
    from promis_repro.stages.run import prepare_run, write_run
    from promis_repro.strategies.runner import run_together

    prepared = {}
    outcome: dict[str, str] = {}
    for strategy, request in requests.items():
        try:
            prepared[strategy] = prepare_run(**request)
        except Exception as exc:  # its cell's own job reports it (it runs alone)
            _failed(staging, strategy, exc, outcome)
    if not prepared:
        return outcome
    try:
        driven = run_together({name: run.strategy_run for name, run in prepared.items()}, progress=not quiet)
    except Exception as exc:  # one episode's error stops the shared run: each runs alone instead
        log.warning("group %s: the shared run failed (%s); each strategy runs alone", staging, exc)
        log.info("%s", traceback.format_exc())
        return outcome
    for strategy, (trajectories, suites) in driven.items():
        try:
            write_run(prepared[strategy], trajectories, suites, staging / strategy, wall=None)
            atomic_write_json(staging / strategy / REQUEST, run_request(**requests[strategy]))
            outcome[strategy] = "ran"
        except Exception as exc:
            _failed(staging, strategy, exc, outcome)
    return outcome


def _run_alone(strategy: str, request: dict[str, Any], staging: Path, quiet: bool) -> str:
    from promis_repro.stages.run import run

    cell = staging / strategy
    shutil.rmtree(cell, ignore_errors=True)
    cell.mkdir(parents=True)
    try:
        run(**request, out=cell, quiet=quiet)
        atomic_write_json(cell / REQUEST, run_request(**request))
    except Exception as exc:
        outcome: dict[str, str] = {}
        _failed(staging, strategy, exc, outcome)
        return outcome[strategy]
    return "ran"


def _evaluate(strategy: str, request: dict[str, Any], staging: Path, name: str | None) -> str:
    from promis_repro.stages.evaluate import evaluate_cell

    cell = staging / strategy
    try:
        evaluate_cell(cell, request["benchmark"], request["data_dir"], workers=1, name=name)
        atomic_write_json(cell / EVALUATED, evaluation_request(cell, request["benchmark"], request["data_dir"]))
    except Exception as exc:
        outcome: dict[str, str] = {}
        _failed(staging, strategy, exc, outcome)
        return outcome[strategy]
    return "staged"


def _failed(staging: Path, strategy: str, exc: Exception, outcome: dict[str, str]) -> None:
    """One strategy's failure is its own cell's to report: its cell job runs it alone."""
    log.warning("group %s: %s failed, its cell will run alone: %s", staging, strategy, exc)
    log.info("%s", traceback.format_exc())
    print(f"{strategy}: failed here ({exc}); its cell runs alone")
    outcome[strategy] = f"failed: {exc}"


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, path = value.partition("=")
        if not sep or not key or not path:
            raise UserError(f"{option} {value!r}: expected STRATEGY=PATH")
        pairs[key] = path
    return pairs
