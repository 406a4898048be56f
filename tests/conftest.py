"""Shared fixtures: the local benchmark data and an isolated cache per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# two xdist workers share the two cores: one torch thread each instead of two threads fighting per core
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PROMIS_REPRO_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # expected outputs computed during the tests stay inside the session
    # unless PROMIS_REPRO_CACHE points somewhere persistent (CI reuses one)
    if "PROMIS_REPRO_CACHE" not in os.environ:
        # pytest-xdist workers share one (every cache write is atomic), so the model is converted once
        shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None
        cache = shared / "cache" if shared else tmp_path_factory.mktemp("cache")
        cache.mkdir(exist_ok=True)
        os.environ["PROMIS_REPRO_CACHE"] = str(cache)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "mbpp.jsonl").exists():
        pytest.fail(f"benchmark data not found in {DATA_DIR}; set PROMIS_REPRO_DATA_DIR")
    return DATA_DIR


STAND_IN_APPTAINER = """#!/bin/sh
# stand-in for Apptainer (not installable here): answer --version, record the call, run the command bare
if [ "$1" = "--version" ]; then echo "apptainer version 1.3.4"; exit 0; fi
echo "$@" >> "$APPTAINER_CALLS"
shift
while [ "$#" -gt 0 ] && [ "$1" != "bash" ] && [ "$1" != "sh" ]; do shift; done
exec "$@"
"""


@pytest.fixture
def apptainer_stand_in(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds a stand-in `apptainer` that logs its calls to ``$APPTAINER_CALLS``.

    Snakemake asks ``apptainer --version`` before it plans a run that uses containers, and runs each job
    as ``apptainer exec ... IMAGE bash -c CMD``: the stand-in records that line and runs the command.
    """
    stand_in = tmp_path / "stand-in-bin" / "apptainer"
    stand_in.parent.mkdir()
    stand_in.write_text(STAND_IN_APPTAINER)
    stand_in.chmod(0o755)
    calls = tmp_path / "apptainer-calls"
    return {**os.environ, "PATH": f"{stand_in.parent}:{os.environ['PATH']}", "APPTAINER_CALLS": str(calls)}


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(
    *args: str, cwd: Path = REPO, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``snakemake ARGS`` in the project (or ``cwd``), its output captured."""
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: jobs per rule."""
    counts = {}
    for line in output.split("Job stats:", 1)[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts
