"""Pipeline stage: Snakemake with one progress line per finished job, then the HTML report.

``promis-repro pipeline --report results/tiny/report.html -- --profile profiles/local --configfile
config/tiny.yaml -c2`` runs ``snakemake`` with the arguments after ``--``, shows each finished job as
one line with an ETA (``workflow_progress.py``) instead of Snakemake's blocks, and, when the run
succeeds, ``snakemake <the same arguments> --report FILE``. Snakemake's own full log stays where it
writes it (``.snakemake/log/``); on a failure its last lines are shown.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

from promis_repro.errors import UserError
from promis_repro.workflow_progress import PipelineProgress, clock

TAIL_LINES = 60


def snakemake_command() -> str:
    """The snakemake beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "snakemake"
    found = str(beside) if beside.exists() else shutil.which("snakemake")
    if found is None:
        raise UserError("snakemake is not installed here (bash scripts/setup.sh installs it in .venv)")
    return found


def pipeline(snakemake_args: list[str], report: str | None = None) -> None:
    quiet = [arg for arg in snakemake_args if arg in ("-q", "--quiet") or arg.startswith("--quiet=")]
    if quiet:
        # Snakemake's --quiet removes the very lines the progress is read from
        raise UserError(f"snakemake argument {quiet[0]}: the pipeline command needs Snakemake's progress lines")
    command = [snakemake_command(), *snakemake_args]
    print(f"promis-repro pipeline: {' '.join(command[1:])}", flush=True)
    progress = PipelineProgress()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    nothing_to_do = False
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as run:
        assert run.stdout is not None
        for line in run.stdout:
            tail.append(line)
            nothing_to_do = nothing_to_do or line.startswith("Nothing to be done")
            shown = progress.read(line)
            if shown:
                print(shown, flush=True)
    if run.returncode != 0:
        sys.stderr.write("".join(tail))
        raise UserError(
            f"snakemake failed (exit {run.returncode}); above, its last lines; all of them: the newest file "
            "in .snakemake/log/"
        )
    elapsed = clock(progress.now() - progress.started)
    print("nothing to do: every output is up to date" if nothing_to_do else f"pipeline done in {elapsed}", flush=True)
    if report:
        done = subprocess.run([*command, "--report", report], capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise UserError(f"snakemake --report {report} failed (exit {done.returncode})")
        print(f"report: {report}", flush=True)
