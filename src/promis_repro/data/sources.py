"""Where benchmark files come from: a local ``data_dir`` first, else the original online release.

Every pinned file is verified against the sha256 recorded in
``shared/data/PROVENANCE.md``; the hash goes into every output's provenance.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_bytes, cache_root, read_jsonl, sha256_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataFile:
    name: str  # file name inside data_dir
    sha256: str | None  # None: not pinned (recorded, not checked)
    url: str | None  # original online source, fetched when no local copy exists
    description: str


DATA_FILES: dict[str, DataFile] = {
    "mbpp": DataFile(
        "mbpp.jsonl",
        "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
        "https://raw.githubusercontent.com/google-research/google-research/"
        "30adf0ec5f35f9609c2f1d896005e184195d9146/mbpp/mbpp.jsonl",
        "MBPP full (974 tasks), google-research at 30adf0ec",
    ),
    "mbpp_sanitized": DataFile(
        "mbpp_sanitized.jsonl",
        "502db01bcc1e911d691d5212bd3d9c60ee52bbc2bd29457a520ace424bb2709d",
        None,  # online: converted from sanitized-mbpp.json, see fetch_sanitized_mbpp
        "MBPP sanitized (427 tasks), JSONL conversion of sanitized-mbpp.json at 30adf0ec",
    ),
    "mbppplus": DataFile(
        "MbppPlus-v0.2.0.jsonl.gz",
        "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
        "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
        "EvalPlus MBPP+ v0.2.0 (378 tasks)",
    ),
    "humanevalplus": DataFile(
        "HumanEvalPlus-v0.1.10.jsonl.gz",
        "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
        "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz",
        "EvalPlus HumanEval+ v0.1.10 (164 tasks)",
    ),
    "apps": DataFile(
        "apps_mapcoder128.jsonl",
        "c2963d640276b44cefd56006c6077591e3212d73889c08444628c03d90363d71",
        None,  # online: the original APPS test split through HF datasets, see apps.load_online
        "APPS subset selected by MapCoder (128 problems)",
    ),
}

SANITIZED_MBPP_URL = (
    "https://raw.githubusercontent.com/google-research/google-research/"
    "30adf0ec5f35f9609c2f1d896005e184195d9146/mbpp/sanitized-mbpp.json"
)


def _download(url: str, target: Path) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as exc:
        raise UserError(f"could not download {url}: {exc}") from exc
    atomic_write_bytes(target, data)


def _fetch_sanitized_mbpp(target: Path) -> None:
    raw = cache_root() / "data" / "sanitized-mbpp.json"
    if not raw.exists():
        _download(SANITIZED_MBPP_URL, raw)
    rows = json.loads(raw.read_text())
    atomic_write_bytes(target, "".join(json.dumps(row) + "\n" for row in rows).encode())


def resolve(key: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """The verified local path of a pinned data file; downloads it when no data_dir copy exists."""
    spec = DATA_FILES[key]
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir) / spec.name)
    candidates.append(cache_root() / "data" / spec.name)
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        target = candidates[-1]
        where = f" in {data_dir}" if data_dir is not None else ""
        missing = f"data file {spec.name} ({spec.description}) not found{where}"
        try:
            if spec.url is not None:
                _download(spec.url, target)
            elif key == "mbpp_sanitized":
                _fetch_sanitized_mbpp(target)
            else:
                raise UserError("it has no direct download")
        except UserError as exc:
            raise UserError(f"{missing}, and {exc}; pass --data-dir pointing at a directory that holds it") from exc
        path = target
    if spec.sha256 is not None and sha256_of(path) != spec.sha256:
        raise UserError(f"data file {path} has sha256 {sha256_of(path)}, expected {spec.sha256} ({spec.description})")
    return path


def require(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in row]
    if missing:
        raise UserError(f"{where}: row lacks field(s) {', '.join(missing)}")


def checked_rows(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a benchmark file that hold every field in ``fields``, each with its ``file:line``."""
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
        require(row, fields, where)
        yield where, row
