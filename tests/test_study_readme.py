"""The committed CPU study's README quotes the numbers its own files hold (``scripts/study_tables.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_cpu_study_readme_quotes_its_cells_and_comparisons():
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "study_tables.py"), str(REPO / "results" / "cpu-study"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
