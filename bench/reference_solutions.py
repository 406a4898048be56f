"""Every benchmark's reference solutions through ``promis-repro evaluate``: all must pass (100%).

    .venv/bin/python bench/reference_solutions.py [--data-dir ../shared/data] [--benchmarks mbpp,mbppplus,...]

Prints, per benchmark, the pass rate, the SoftPass rate and the wall time (cold expected-output
cache, then warm), and lists any task whose reference fails.
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

REPO = Path(__file__).resolve().parents[1]
WITH_REFERENCES = ("mbpp", "mbpp_sanitized", "mbppplus", "humaneval", "humanevalplus")


def cli(*args: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "promis_repro.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--benchmarks", default=",".join(WITH_REFERENCES))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="bench-refs-")  # removed when main returns
    work = Path(scratch.name)
    env = dict(os.environ, PROMIS_REPRO_CACHE=str(work / "cache"))
    print(f"{'benchmark':16}{'tasks':>7}{'pass@1':>9}{'soft':>9}{'cold s':>9}{'warm s':>9}")
    all_pass = True
    for benchmark in args.benchmarks.split(","):
        samples = work / f"{benchmark}.jsonl"
        cli("data", "references", "--benchmark", benchmark, "--data-dir", args.data_dir, "--out", str(samples), env=env)
        out = work / benchmark
        common = ["evaluate", "--benchmark", benchmark, "--samples", str(samples), "--out", str(out),
                  "--data-dir", args.data_dir, "--workers", str(args.workers), "--quiet"]  # fmt: skip
        cold = cli(*common, env=env)
        warm = cli(*common, env=env)
        summary = json.loads((out / "summary.json").read_text())
        print(
            f"{benchmark:16}{summary['n_tasks']:>7}{summary['pass_at_1']:>9.2%}"
            f"{summary['soft_pass_at_1']:>9.2%}{cold:>9.1f}{warm:>9.1f}"
        )
        for line in (out / "results.jsonl").read_text().splitlines():
            row = json.loads(line)
            if not row["passed"]:
                all_pass = False
                print(f"  FAIL {row['task_id']}: {row['status']} {row['error']}")
    print("all reference solutions pass" if all_pass else "SOME REFERENCE SOLUTIONS FAIL")
    sys.exit(0 if all_pass else 1)


if __name__ == "__main__":
    main()
