"""Evaluate stage: score samples on a benchmark's hidden tests in the sandbox.

``evaluate`` scores any samples file (``results.jsonl`` + ``summary.json``); ``evaluate_cell``
scores a cell's final solutions once, after its strategy ran (``results.jsonl`` + ``metrics.json``,
what the aggregate stage reads).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_jsonl, sha256_of, write_outputs

if TYPE_CHECKING:
    from promis_repro.evaluation.cache import ResultCache
    from promis_repro.evaluation.levels import LevelSettings


def _score(
    benchmark: str,
    samples: Path,
    data_dir: str | os.PathLike[str] | None,
    workers: int,
    import_header: str = "none",
    progress: bool = False,
    levels: LevelSettings | None = None,
    cache: ResultCache | None = None,
) -> tuple[list[dict[str, Any]], list[Any], dict[str, str | None], dict[str, Any]]:
    """Result rows, the benchmark's tasks, the data hashes (benchmark file, samples) and the active isolation."""
    from promis_repro.evaluation.evaluator import evaluate_samples
    from promis_repro.sandbox.runner import detect_isolation

    rows, tasks = evaluate_samples(
        benchmark,
        samples,
        data_dir=data_dir,
        workers=workers,
        import_header=import_header,
        progress=progress,
        levels=levels,
        cache=cache,
    )
    hashes = {benchmark: tasks[0].source_hash if tasks else None, "samples": sha256_of(samples)}
    return rows, tasks, hashes, detect_isolation().describe()


def evaluate(
    benchmark: str,
    samples: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    workers: int = 2,
    import_header: str = "none",
    quiet: bool = False,
    levels: bool = False,
    max_complexity: int = 10,
    security: bool = True,
) -> dict[str, Any]:
    """``results.jsonl`` (one row per sample, input order) and ``summary.json`` in ``out``.

    ``quiet``: no progress bar. ``levels``: each row gets its five levels (``evaluation/levels.py``), with
    ``max_complexity`` and ``security`` (bandit on or off) for the quality level.
    """
    from promis_repro.evaluation.levels import LevelSettings
    from promis_repro.metrics import summarize
    from promis_repro.provenance import provenance

    if not levels and (max_complexity != 10 or not security):
        raise UserError("--max-complexity and --no-security set the quality level: they need --levels")
    settings = LevelSettings(max_complexity=max_complexity, security=security) if levels else None
    rows, _, hashes, sandbox = _score(
        benchmark, Path(samples), data_dir, workers, import_header, not quiet, levels=settings
    )
    config = {"command": "evaluate", "benchmark": benchmark, "import_header": import_header, "workers": workers}
    if settings is not None:
        config["levels"] = settings.as_dict()
    summary: dict[str, Any] = {"benchmark": benchmark, **summarize(rows), "sandbox": sandbox}
    summary["provenance"] = provenance(config=config, data_hashes=hashes, extra={"import_header": import_header})
    out = write_outputs(out, {"results.jsonl": rows}, {"summary.json": summary})
    print(
        f"{benchmark}: {summary['n_samples']} samples over {summary['n_tasks']} tasks, "
        f"pass@1 {summary['pass_at_1']:.4f}, softpass@1 {summary['soft_pass_at_1']:.4f}{_levels_line(summary)} -> {out}"
    )
    return summary


def _levels_line(summary: dict[str, Any]) -> str:
    from promis_repro.evaluation.levels import LEVELS

    levels = summary.get("levels")
    if not levels:
        return ""
    shown = ", ".join(f"{name} {'n/a' if levels[name] is None else format(levels[name], '.3f')}" for name in LEVELS)
    return f"; levels: {shown}"


def evaluate_cell(
    cell: str | os.PathLike[str],
    benchmark: str,
    data_dir: str | os.PathLike[str] | None,
    workers: int = 2,
    *,
    name: str | None = None,
    adopt: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """A cell's ``results.jsonl`` (with APPS difficulty), ``candidates.jsonl`` (every candidate of the
    trajectories, scored on the hidden tests: the budget curve's input) and ``metrics.json``.

    ``name``: the cell's path as its provenance records it (a group job scores a staged copy of the cell);
    ``adopt``: a group job's staged cell, whose scores are taken when it scored these very run files.
    """
    cell = Path(cell)
    if adopt:
        from promis_repro.stages.group import EVALUATED, EVALUATION_FILES, adopt_staged, evaluation_request

        # a cell without run files asks for their hashes as None, which no staged evaluation recorded
        if adopt_staged(adopt, cell, EVALUATED, evaluation_request(cell, benchmark, data_dir), EVALUATION_FILES):
            print(f"{cell}: scores taken from its group's evaluation ({adopt})")
            return json.loads((cell / "metrics.json").read_text())
    from promis_repro.evaluation.cache import ResultCache
    from promis_repro.evaluation.levels import level_settings
    from promis_repro.metrics import summarize
    from promis_repro.provenance import provenance

    cost_path = cell / "cost.json"
    if not cost_path.exists():
        raise UserError(f"{cell}: no cost.json; run the strategy first")
    cost = json.loads(cost_path.read_text())
    # the levels as the run measured them for its reward (its strategy file's ``levels:``), defaults otherwise
    levels = level_settings(cost.get("reward", {}).get("levels"), f"{cost_path}: reward.levels")
    # the cells of a grid score many identical programs (every strategy's first candidate is the direct
    # generation); each run is made once on this machine and shared (evaluation/cache.py)
    cache = ResultCache()
    rows, tasks, hashes, sandbox = _score(
        benchmark, cell / "samples.jsonl", data_dir, workers, levels=levels, cache=cache
    )
    difficulty = {task.task_id: task.difficulty for task in tasks}
    rows = [{**row, "difficulty": difficulty.get(row["task_id"])} for row in rows]  # APPS tables by difficulty
    candidates = _score_candidates(cell, benchmark, data_dir, workers, rows, cache)
    run = cost["provenance"]
    metrics: dict[str, Any] = {
        "model": run.get("config", {}).get("model"),
        "benchmark": benchmark,
        "strategy": cost["strategy"],
        "seed": run.get("seed"),
        "feedback": cost["feedback"],
        "leaky": cost["leaky"],
        "protocol": cost.get("protocol", "ours"),
        **summarize(rows),
        "cost": cost["mean_per_task"],
        "budget": cost["budget"],
        "reward": cost["reward"]["formula"],
        "pools": cost.get("pools"),  # sha256 of the training side the run was checked against
        "level_settings": levels.as_dict(),
        "stops": _stops(cost),
        "sandbox": sandbox,
        "evaluation_cache": asdict(cache.stats),
    }
    metrics["provenance"] = provenance(
        config={"command": "evaluate-cell", "cell": name or str(cell), "run": run.get("config_hash")},
        data_hashes=hashes,
        model=run.get("model"),
        seed=run.get("seed"),
    )
    write_outputs(cell, {"results.jsonl": rows, "candidates.jsonl": candidates}, {"metrics.json": metrics})
    print(f"{cell}: pass@1 {metrics['pass_at_1']:.4f}, softpass@1 {metrics['soft_pass_at_1']:.4f}")
    return metrics


def _stops(cost: dict[str, Any]) -> dict[str, int]:
    """How many of the cell's tasks ended for each reason (``strategies.actions``: budget, pass, ...)."""
    stops: dict[str, int] = {}
    for entry in cost["per_task"].values():
        reason = entry.get("stop", "not recorded")
        stops[reason] = stops.get(reason, 0) + 1
    return stops


def _score_candidates(
    cell: Path,
    benchmark: str,
    data_dir: str | os.PathLike[str] | None,
    workers: int,
    finals: list[dict[str, Any]],
    cache: ResultCache,
) -> list[dict[str, Any]]:
    """Every candidate a strategy produced (``trajectories.jsonl``), scored once on the hidden tests.

    Rows carry what the strategy saw (its visible feedback) and what it cost (``budget_calls``), so
    the best-so-far candidate after k calls is chosen later without new generation; codes scored
    already (the final solutions, repeats) are not run again.
    """
    from promis_repro.io import read_jsonl

    scored = {}
    for (_, sample), result in zip(read_jsonl(cell / "samples.jsonl"), finals, strict=True):
        scored.setdefault((str(sample["task_id"]), sample["solution"]), result)
    steps = [row for _, row in read_jsonl(cell / "trajectories.jsonl") if "code" in row]
    pending = list(
        dict.fromkeys((str(s["task_id"]), s["code"]) for s in steps if (str(s["task_id"]), s["code"]) not in scored)
    )
    if pending:
        with tempfile.TemporaryDirectory(prefix="promis-candidates-") as scratch:
            path = Path(scratch) / "samples.jsonl"
            atomic_write_jsonl(path, ({"task_id": task_id, "solution": code} for task_id, code in pending))
            results, *_ = _score(benchmark, path, data_dir, workers, cache=cache)
        scored.update(zip(pending, results, strict=True))
    rows = []
    for step in steps:
        result = scored[(str(step["task_id"]), step["code"])]
        feedback = step.get("feedback") or {}
        rows.append(
            {
                "task_id": str(step["task_id"]),
                "step": step["step"],
                "budget_calls": step.get("budget_calls", step.get("generator_calls")),
                "feedback_soft": feedback.get("soft", 0.0),
                "feedback_passed": bool(feedback.get("passed", False)),
                "passed": result["passed"],
                "soft_pass": result["soft_pass"],
            }
        )
    return rows
