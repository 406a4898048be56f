"""Checkpoints of a training run, named by an atomically replaced pointer file (PPO and GRPO).

A checkpoint is written in full into its own directory first; only then does ``OUT/checkpoint.json``
name it (written to a temporary file and renamed over the old one), and only after that is the
previous checkpoint deleted. A job killed at any moment, even mid-write, leaves the pointer on a
complete checkpoint, which a rerun with the same arguments resumes from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from promis_repro.io import atomic_write_json

POINTER = "checkpoint.json"
#: where the trainers keep their checkpoints under OUT (PPO's ``checkpoints/``, the GRPO Trainer's ``trainer/``)
CHECKPOINT_DIRECTORIES = ("checkpoints", "trainer")


def discard_checkpoints(out: Path) -> None:
    """Forget a finished run's checkpoints (once its ``training.json`` is written).

    Only an interrupted run resumes: a finished run trained again (``--forcerun``, a relocked model, a
    fixed reward) must train, not pick up its old final checkpoint. The pointer goes first, so a kill
    midway leaves no pointer naming a deleted checkpoint.
    """
    (Path(out) / POINTER).unlink(missing_ok=True)
    for name in CHECKPOINT_DIRECTORIES:
        shutil.rmtree(Path(out) / name, ignore_errors=True)


class CheckpointPointer:
    """``OUT/checkpoint.json``: ``{"directory": <relative to OUT>, ...what the trainer records}``."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.pointer = self.out / POINTER

    def record(self) -> dict[str, Any] | None:
        """The pointer's contents, or None before the first checkpoint."""
        if not self.pointer.exists():
            return None
        return json.loads(self.pointer.read_text())

    def latest(self) -> Path | None:
        """The directory of the last complete checkpoint, or None."""
        record = self.record()
        return None if record is None else self.out / record["directory"]

    def fresh(self, directory: Path) -> Path:
        """``directory`` emptied (left over from a checkpoint a kill interrupted) and created."""
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        return directory

    def commit(self, directory: Path, **record: Any) -> None:
        """Point at ``directory`` (complete by now), then delete the checkpoint pointed at before."""
        previous = self.latest()
        atomic_write_json(self.pointer, {"directory": str(Path(directory).relative_to(self.out)), **record})
        if previous is not None and previous.resolve() != Path(directory).resolve() and previous.exists():
            shutil.rmtree(previous)
