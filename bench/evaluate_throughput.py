"""Evaluator throughput and agreement: promis-repro vs EvalPlus 0.3.1's own evaluator, side by side.

Evaluates, on MBPP+ v0.2.0, the canonical solution of every task plus broken
variants of each (see promis_repro.evaluation.agreement.mutants), with both
evaluators, cold (no expected outputs cached) and warm, on the same machine in
one run. EvalPlus runs with ``--test_details`` so that both evaluate every
input (fast_check off). Prints wall times, the ratios, the canonical pass rate
and the verdict agreement (base/plus status and number of failing inputs).

    .venv/bin/python bench/evaluate_throughput.py [--data-dir ../shared/data] [--mutants returns_none,off_by_one]

Goal: promis-repro at most half EvalPlus's time, cold and warm; 100% agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from promis_repro.data.registry import load_benchmark
from promis_repro.data.sources import resolve
from promis_repro.evaluation.agreement import mutants

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(
        command, env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--mutants", default="returns_none,off_by_one", help="comma-separated mutant names")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N tasks only (quick check)")
    parser.add_argument("--tasks", default=None, help="comma-separated task ids only (e.g. Mbpp/255,Mbpp/392)")
    args = parser.parse_args()

    tasks = load_benchmark("mbppplus", args.data_dir)[: args.limit]
    if args.tasks:
        wanted_ids = set(args.tasks.split(","))
        tasks = [t for t in tasks if t.task_id in wanted_ids]
    wanted = ["canonical", *[m for m in args.mutants.split(",") if m]]
    scratch = tempfile.TemporaryDirectory(prefix="bench-eval-")  # removed when main returns
    work = Path(scratch.name)
    samples = work / "samples.jsonl"
    order = []
    with open(samples, "w") as handle:
        for task in tasks:
            variants = mutants(task.reference_solution, task.entry_point)
            for name in wanted:
                handle.write(json.dumps({"task_id": task.task_id, "solution": variants[name]}) + "\n")
                order.append((task.task_id, name))
    print(f"{len(order)} programs ({', '.join(wanted)}) over {len(tasks)} MBPP+ tasks, {args.workers} workers")

    env = dict(os.environ)
    env["MBPP_OVERRIDE_PATH"] = str(resolve("mbppplus", args.data_dir))
    if args.limit is not None or args.tasks:
        # EvalPlus insists on every task of its dataset having samples
        subset = work / "MbppPlus-subset.jsonl"
        import gzip

        keep = {t.task_id for t in tasks}
        with gzip.open(env["MBPP_OVERRIDE_PATH"], "rt") as src, open(subset, "w") as dst:
            dst.writelines(line for line in src if json.loads(line)["task_id"] in keep)
        env["MBPP_OVERRIDE_PATH"] = str(subset)
    env["XDG_CACHE_HOME"] = str(work / "evalplus-cache")
    env["PROMIS_REPRO_CACHE"] = str(work / "promis-cache")

    evalplus = [sys.executable, "-m", "evalplus.evaluate", "--dataset", "mbpp", "--samples", str(samples),
                "--parallel", str(args.workers), "--test_details"]  # fmt: skip
    ours = [sys.executable, "-m", "promis_repro.cli", "evaluate", "--benchmark", "mbppplus", "--samples",
            str(samples), "--out", str(work / "ours"), "--data-dir", args.data_dir,
            "--workers", str(args.workers), "--quiet"]  # fmt: skip
    evalplus_results = work / "samples_eval_results.json"

    times = {}
    times["evalplus_cold"] = timed(evalplus, env)
    saved = evalplus_results.read_text()
    evalplus_results.unlink()  # otherwise EvalPlus just reloads its earlier verdicts
    times["evalplus_warm"] = timed(evalplus, env)
    times["ours_cold"] = timed(ours, env)
    times["ours_warm"] = timed(ours, env)

    theirs = json.loads(saved)["eval"]
    rows = [json.loads(line) for line in (work / "ours" / "results.jsonl").read_text().splitlines()]
    agree = 0
    disagreements = []
    position: dict[str, int] = {}
    for (task_id, name), row in zip(order, rows):
        index = position.get(task_id, 0)
        position[task_id] = index + 1
        verdict = theirs[task_id][index]
        same = row["base_status"] == verdict["base_status"] and row["plus_status"] == verdict["plus_status"]
        if same and verdict["base_status"] != "timeout":
            same = row["base"].count(0) == len(verdict["base_fail_tests"])
        if same and verdict["plus_status"] != "timeout":
            same = row["plus"].count(0) == len(verdict["plus_fail_tests"])
        agree += same
        if not same:
            disagreements.append((task_id, name, row["base_status"], row["plus_status"],
                                  verdict["base_status"], verdict["plus_status"]))  # fmt: skip
    canonical = [row for (_, name), row in zip(order, rows) if name == "canonical"]
    canonical_pass = sum(r["passed"] for r in canonical) / len(canonical)

    print(f"{'':14}{'EvalPlus':>12}{'promis-repro':>14}{'ratio':>9}")
    for phase in ("cold", "warm"):
        e, o = times[f"evalplus_{phase}"], times[f"ours_{phase}"]
        print(f"{phase:14}{e:>11.1f}s{o:>13.1f}s{o / e:>9.2f}")
    print(f"canonical solutions passing (promis-repro): {canonical_pass:.2%}")
    evalplus_canonical = [theirs[t][0] for t in theirs]
    passing = sum(v["base_status"] == v["plus_status"] == "pass" for v in evalplus_canonical)
    print(f"canonical solutions passing (EvalPlus):     {passing / len(evalplus_canonical):.2%}")
    print(f"verdict agreement: {agree}/{len(rows)} = {agree / len(rows):.2%}")
    for item in disagreements[:20]:
        print("  disagree:", *item)


if __name__ == "__main__":
    main()
