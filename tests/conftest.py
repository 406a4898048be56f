"""Shared fixtures: the local benchmark data and an isolated cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PROMIS_REPRO_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # expected outputs computed during the tests stay inside the session
    # unless PROMIS_REPRO_CACHE points somewhere persistent (CI reuses one)
    if "PROMIS_REPRO_CACHE" not in os.environ:
        os.environ["PROMIS_REPRO_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "mbpp.jsonl").exists():
        pytest.fail(f"benchmark data not found in {DATA_DIR}; set PROMIS_REPRO_DATA_DIR")
    return DATA_DIR
