"""Pipeline timings, side by side in one run (2 cores):

1. ``snakemake -n`` on the paper's full grid (goal < 10 s);
2. the tiny config end to end, cold: empty results tree and empty caches (goal < 300 s with -c2);
3. the same invocation again: nothing to do (goal < 5 s);
4. one cell deleted and rerun: only that cell's run and evaluation, the generation cache warm (goal < 10 s).

  .venv/bin/python bench/pipeline.py [--cores 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary results and cache")
    args = parser.parse_args()
    snakemake = [str(Path(sys.executable).parent / "snakemake")]
    scratch = Path(tempfile.mkdtemp(prefix="promis-pipeline-bench-"))
    env = dict(
        os.environ,
        PROMIS_REPRO_CACHE=str(scratch / "cache"),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    results = scratch / "results"
    tiny = [*snakemake, "--configfile", "config/tiny.yaml", "--config", f"results={results}", "-c", str(args.cores)]

    # `--quiet rules host` keeps the job-stats table, whose last line is the total number of jobs
    dry_run = [*snakemake, "-n", "--quiet", "rules", "host"]
    dry, planned = timed(dry_run, env)
    total = re.search(r"^total\s+(\d+)", planned.stdout + planned.stderr, flags=re.MULTILINE)
    jobs = total.group(1) if total else "?"
    print(f"snakemake -n, full grid ({jobs} jobs): {dry:.1f} s (goal < 10 s)")
    # the SLURM executor plugin runs `scontrol show config` when Snakemake loads it; with SLURM
    # installed but its controller down, that call waits up to 10 s. Without the wait:
    fake = scratch / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (fake / "scontrol").chmod(0o755)
    quick, _ = timed(dry_run, {**env, "PATH": f"{fake}:{env['PATH']}"})
    print(f"snakemake -n, full grid, scontrol answering at once: {quick:.1f} s")
    cold, _ = timed(tiny, env)
    print(f"tiny config, cold (empty results and caches), -c{args.cores}: {cold:.1f} s (goal < 300 s)")
    noop, done = timed(tiny, env)
    nothing = "Nothing to be done" in done.stdout + done.stderr
    print(f"tiny config, second invocation: {noop:.1f} s, nothing to do: {nothing} (goal < 5 s)")
    grid = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    cell = results / grid["generators"][0] / grid["benchmarks"][0] / "epic" / "seed1"
    shutil.rmtree(cell)
    single, done = timed([*tiny, str(cell / "metrics.json")], env)
    ran = re.findall(r"^(?:local)?rule (\w+):", done.stdout + done.stderr, flags=re.MULTILINE)
    print(f"one cell deleted and rerun from cache: {single:.1f} s (goal < 10 s; rules run: {', '.join(ran) or 'none'})")
    print(f"ratios: no-op / cold {noop / cold:.3f}, single cell / cold {single / cold:.3f}")
    if args.keep:
        print(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
