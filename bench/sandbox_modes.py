"""The sandbox as root (a dedicated uid per run) against an ordinary user (user namespaces), side by side.

    .venv/bin/python bench/sandbox_modes.py --user USER [--data-dir ../shared/data] [--benchmark mbppplus]

Run as root. Scores every reference solution of the benchmark (MBPP+ by default: 378 canonical
solutions) with ``promis-repro evaluate`` once as root and once as USER (an ordinary account that can
run this checkout's interpreter), each with its own expected-output cache warmed first, then timed
warm, alternating the modes over ``--repeats`` rounds. Prints each mode's isolation, its wall times,
the unprivileged/root time ratio, and every task whose verdict differs between the modes (none
expected).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def evaluate(mode: str, work: Path, samples: Path, args: argparse.Namespace) -> tuple[float, Path]:
    out = work / f"out-{mode}"
    data_dir, workers = args.data_dir, args.workers
    command = [sys.executable, "-m", "promis_repro.cli", "evaluate", "--benchmark", args.benchmark,
               "--samples", str(samples), "--out", str(out), "--data-dir", data_dir, "--workers", str(workers),
               "--quiet"]  # fmt: skip
    env = {"PATH": os.environ["PATH"], "PROMIS_REPRO_CACHE": str(work / f"cache-{mode}"), "HOME": str(work)}
    if mode == "user":
        account = pwd.getpwnam(args.user)
        env["HOME"] = account.pw_dir
        command = ["runuser", "-u", args.user, "--", "env", *(f"{k}={v}" for k, v in env.items()), *command]
    started = time.monotonic()
    subprocess.run(command, env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.monotonic() - started, out


def verdicts(out: Path) -> dict[str, tuple[str, float]]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {row["task_id"]: (row["status"], row["soft_pass"]) for row in rows}


def main(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: the bench compares root with --user")
    work = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    os.chmod(work, 0o777)  # both modes write their outputs and caches here
    samples = work / "samples.jsonl"
    references = [
        "data",
        "references",
        "--benchmark",
        args.benchmark,
        "--data-dir",
        args.data_dir,
        "--out",
        str(samples),
    ]
    subprocess.run([sys.executable, "-m", "promis_repro.cli", *references], check=True, stdout=subprocess.DEVNULL)
    os.chmod(samples, 0o644)
    times: dict[str, list[float]] = {"root": [], "user": []}
    outputs: dict[str, Path] = {}
    for mode in times:  # warm each mode's expected-output cache
        evaluate(mode, work, samples, args)
    for _ in range(args.repeats):
        for mode in times:
            seconds, outputs[mode] = evaluate(mode, work, samples, args)
            times[mode].append(seconds)
    isolation = {mode: json.loads((out / "summary.json").read_text())["sandbox"] for mode, out in outputs.items()}
    root, user = verdicts(outputs["root"]), verdicts(outputs["user"])
    differ = sorted(task for task in root if root[task] != user.get(task))
    passed = {mode: sum(status == "pass" for status, _ in v.values()) for mode, v in (("root", root), ("user", user))}
    print(f"{args.benchmark}: {len(root)} reference solutions, {args.workers} workers, {args.repeats} warm rounds")
    for mode in times:
        runs = ", ".join(f"{t:.2f}" for t in times[mode])
        median = statistics.median(times[mode])
        print(f"  {mode:5} isolation {isolation[mode]['mode']:15} pass {passed[mode]:4}  warm s {median:7.2f} ({runs})")
    ratio = statistics.median(times["user"]) / statistics.median(times["root"])
    print(f"  unprivileged / root time ratio (median): {ratio:.2f}")
    print(f"  verdicts that differ between the modes: {len(differ)}" + (f" {differ[:10]}" if differ else ""))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", required=True, help="an ordinary account that can run this checkout's interpreter")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--benchmark", default="mbppplus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    main(parser.parse_args())
