"""What the multi-level evaluation costs per sample, and that it changes no verdict.

    .venv/bin/python bench/levels_cost.py [--data-dir ../shared/data] [--benchmarks mbppplus,humanevalplus]
                                          [--variant-tasks 40]

Per benchmark, every reference solution plus, on the first ``--variant-tasks`` tasks, the two correct
but worse variants (``slow``, ``badly_styled``: ``evaluation/agreement.correct_but_worse``) are scored
twice in one process, side by side: without levels, then with ``--levels`` (expected outputs cached
by a first, untimed run). Prints the seconds per sample of each, the ratio, the quality tools' own
time per sample, the mean levels per variant, the reference solutions' lowest efficiency, and how many
verdicts differ between the two runs (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERDICT_KEYS = ("status", "passed", "soft_pass", "passed_base", "soft_pass_base", "base", "plus", "outcomes", "error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--benchmarks", default="mbppplus,humanevalplus")
    parser.add_argument("--variant-tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="bench-levels-")  # removed when main returns
    work = Path(scratch.name)
    os.environ["PROMIS_REPRO_CACHE"] = str(work / "cache")

    from promis_repro.data.registry import load_benchmark
    from promis_repro.evaluation.agreement import correct_but_worse
    from promis_repro.evaluation.evaluator import evaluate_samples
    from promis_repro.evaluation.levels import LevelSettings, quality_parts

    print(f"{os.cpu_count()} cores; {args.workers} workers; cache {work / 'cache'}")
    differing = 0
    for benchmark in args.benchmarks.split(","):
        tasks = load_benchmark(benchmark, args.data_dir)
        samples: list[dict[str, str]] = []
        for index, task in enumerate(tasks):
            samples.append({"task_id": task.task_id, "solution": task.reference_solution, "variant": "canonical"})
            if index < args.variant_tasks:
                for name, code in correct_but_worse(task.reference_solution, task.entry_point).items():
                    samples.append({"task_id": task.task_id, "solution": code, "variant": name})
        path = work / f"{benchmark}.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in samples))
        options = {"data_dir": args.data_dir, "workers": args.workers, "progress": False}
        evaluate_samples(benchmark, path, **options)  # expected outputs into the cache, untimed
        started = time.perf_counter()
        plain, _ = evaluate_samples(benchmark, path, **options)
        plain_seconds = time.perf_counter() - started
        started = time.perf_counter()
        scored, _ = evaluate_samples(benchmark, path, levels=LevelSettings(), **options)
        levels_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for sample in samples:
            quality_parts(sample["solution"], LevelSettings())
        tools_seconds = time.perf_counter() - started
        n = len(samples)
        changed = [
            s["task_id"]
            for s, a, b in zip(samples, plain, scored, strict=True)
            if any(a[k] != b[k] for k in VERDICT_KEYS)
        ]
        differing += len(changed)
        print(f"\n{benchmark}: {len(tasks)} tasks, {n} samples")
        print(f"  without levels {plain_seconds:8.1f} s  ({1000 * plain_seconds / n:6.1f} ms/sample)")
        print(f"  with levels    {levels_seconds:8.1f} s  ({1000 * levels_seconds / n:6.1f} ms/sample)")
        print(f"  ratio          {levels_seconds / plain_seconds:8.2f}")
        print(f"  quality tools alone (one process, sequential): {1000 * tools_seconds / n:6.1f} ms/sample")
        print(f"  verdicts that differ between the two runs: {len(changed)} {changed[:5]}")
        by_variant: dict[str, list[dict]] = {}
        for sample, row in zip(samples, scored, strict=True):
            by_variant.setdefault(sample["variant"], []).append(row["levels"])
        print(
            f"  {'variant':14}{'n':>5}{'syntax':>8}{'exec':>7}{'tests':>7}{'quality':>9}{'effic.':>8}{'min eff.':>10}"
        )
        for variant, rows in by_variant.items():
            mean = {k: _mean([r[k] for r in rows]) for k in ("syntax", "execution", "tests", "quality", "efficiency")}
            lowest = min((r["efficiency"] for r in rows if r["efficiency"] is not None), default=float("nan"))
            print(
                f"  {variant:14}{len(rows):>5}{mean['syntax']:>8.3f}{mean['execution']:>7.3f}{mean['tests']:>7.3f}"
                f"{mean['quality']:>9.3f}{mean['efficiency']:>8.3f}{lowest:>10.3f}"
            )
        canonical = by_variant["canonical"]
        complete = sum(r["syntax"] == 1 and r["execution"] == 1 and r["tests"] == 1.0 for r in canonical)
        print(f"  reference solutions with syntax, execution and tests all 1: {complete}/{len(canonical)}")
        low = [(s["task_id"], round(r["levels"]["efficiency"] or 0, 3)) for s, r in zip(samples, scored, strict=True)
               if s["variant"] == "canonical" and (r["levels"]["efficiency"] or 0) < 0.8]  # fmt: skip
        print(f"  reference solutions with efficiency below 0.8: {len(low)} {low[:8]}")
    sys.exit(1 if differing else 0)


def _mean(values: list) -> float:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else float("nan")


if __name__ == "__main__":
    main()
