"""Provenance stamped on every output: config hash, data hashes, model, seed, versions, git commit."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "promis-repro",
    "evalplus",
    "numpy",
    "scipy",
    "torch",
    "transformers",
    "sentence-transformers",
    "nltk",
    "stable-baselines3",
    "trl",
    "peft",
    "snakemake",
    # the quality level's tools
    "ruff",
    "radon",
    "bandit",
)


def config_hash(config: Any) -> str:
    """sha256 of the canonical JSON of a config (sorted keys), so equal configs hash equally."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


@functools.cache
def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.cache
def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    commit = result.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def provenance(
    *,
    config: Any,
    data_hashes: dict[str, str],
    model: dict[str, Any] | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "config_hash": config_hash(config),
        "config": config,
        "data_hashes": data_hashes,
        "model": model,
        "seed": seed,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
