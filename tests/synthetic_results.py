"""Results trees with known answers, written the way ``promis-repro evaluate-cell`` writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA_HASH = "ab" * 32


def write_cell(
    root: Path,
    model: str,
    benchmark: str,
    strategy: str,
    seed: int,
    outcomes: list[tuple[str, bool, float]],
    feedback: str = "visible",
    difficulty: dict[str, str] | None = None,
    calls: float = 1.0,
) -> Path:
    leaky = feedback == "oracle"
    cell = root / model / benchmark / (strategy + ("-oracle" if leaky else "")) / f"seed{seed}"
    cell.mkdir(parents=True)
    rows = [
        {
            "task_id": task,
            "sample_index": 0,
            "passed": passed,
            "soft_pass": soft,
            "difficulty": (difficulty or {}).get(task),
        }
        for task, passed, soft in outcomes
    ]
    (cell / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # one candidate per task, written at the first call: the final answer (what evaluate-cell scores)
    candidates = [
        {"task_id": r["task_id"], "step": 0, "budget_calls": 1, "feedback_soft": r["soft_pass"],
         "feedback_passed": r["passed"], "passed": r["passed"], "soft_pass": r["soft_pass"]}
        for r in rows
    ]  # fmt: skip
    (cell / "candidates.jsonl").write_text("".join(json.dumps(c) + "\n" for c in candidates))
    metrics = {
        "model": model,
        "benchmark": benchmark,
        "strategy": strategy,
        "seed": seed,
        "feedback": feedback,
        "leaky": leaky,
        "n_tasks": len(rows),
        "pass_at_1": float(np.mean([r["passed"] for r in rows])),
        "soft_pass_at_1": float(np.mean([r["soft_pass"] for r in rows])),
        # known levels: quality and efficiency follow SoftPass and Pass@1 (the tables' columns show them)
        "levels": {
            "syntax": 1.0,
            "execution": 1.0,
            "tests": float(np.mean([r["soft_pass"] for r in rows])),
            "quality": 0.5 + 0.5 * float(np.mean([r["soft_pass"] for r in rows])),
            "efficiency": 0.9 if any(r["passed"] for r in rows) else None,
        },
        "cost": {"generator_calls": calls, "rewriter_calls": 0.0, "tokens": 100 * calls, "model_seconds": calls},
        "budget": {"generator_calls": 10, "rewriter_calls": 10},
        "reward": "r = 1[all pass]",
        "provenance": {
            "config_hash": "c" * 64,
            "data_hashes": {benchmark: DATA_HASH, "samples": "d" * 64},
            "model": {"generator": {"name": model, "hub_id": f"hub/{model}", "revision": "main"}},
            "seed": seed,
            "packages": {"python": "3.11.7"},
            "git_commit": "0" * 40,
        },
    }
    (cell / "metrics.json").write_text(json.dumps(metrics))
    return cell / "metrics.json"


def planted_tree(root: Path, n_tasks: int = 60, seeds: tuple[int, ...] = (1, 2, 3), rng_seed: int = 7) -> None:
    """MBPP+ on one generator. Every task has its own solve rate q (uniform in [0.5, 1]); ppo and
    ga_only solve it with probability q, drawn independently (no difference); direct with
    probability max(q - 0.6, 0.05) (a planted difference of about 0.55)."""
    rng = np.random.default_rng(rng_seed)
    rates = rng.uniform(0.5, 1.0, n_tasks)
    shifts = {"ppo": 0.0, "direct": 0.6, "ga_only": 0.0}
    for strategy, shift in shifts.items():
        for seed in seeds:
            outcomes = []
            for t in range(n_tasks):
                passed = bool(rng.random() < max(rates[t] - shift, 0.05))
                outcomes.append((f"Mbpp/{t}", passed, 1.0 if passed else float(rng.uniform(0, 0.6))))
            write_cell(root, "codellama-7b-instruct", "mbppplus", strategy, seed, outcomes)


def small_tree(root: Path) -> None:
    """A deterministic tree for golden tables: two generators, MBPP+ and APPS, three strategies, two seeds."""
    solved = {  # (strategy, seed) -> tasks solved, per model offset
        ("direct", 1): {0},
        ("direct", 2): {0, 1},
        ("epic", 1): {0, 1, 2},
        ("epic", 2): {0, 2},
        ("ppo", 1): {0, 1, 2, 3},
        ("ppo", 2): {0, 1, 2},
    }
    difficulty = {"a0": "introductory", "a1": "introductory", "a2": "interview", "a3": "competition"}
    for offset, model in enumerate(("codet5p-770m-py", "codellama-7b-instruct")):
        for (strategy, seed), tasks in solved.items():
            tasks = tasks | ({3} if offset else set())
            mbpp = [(f"Mbpp/{t}", t in tasks, 1.0 if t in tasks else 0.15 * t) for t in range(6)]
            write_cell(root, model, "mbppplus", strategy, seed, mbpp, calls=1 + len(tasks))
            apps = [(f"a{t}", t in tasks, 1.0 if t in tasks else 0.5) for t in range(4)]
            write_cell(root, model, "apps", strategy, seed, apps, difficulty=difficulty)
