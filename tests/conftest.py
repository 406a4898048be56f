"""Shared fixtures: the local benchmark data and an isolated cache per test session."""

from __future__ import annotations

import os
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
