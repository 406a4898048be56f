"""Where benchmark files come from: a local ``data_dir`` first, else the original online release.

Every pinned file is verified against the sha256 recorded in ``shared/data/PROVENANCE.md`` before it is
used or cached; the hash goes into every output's provenance.

The hosts are settings, so a mirror (or the tests' stand-in server on 127.0.0.1) can serve the same
paths: ``PROMIS_REPRO_GITHUB_RELEASES`` (release assets, default https://github.com),
``PROMIS_REPRO_GITHUB_RAW`` (raw repository files, default https://raw.githubusercontent.com) and the
hub's own ``HF_ENDPOINT`` (default https://huggingface.co). Each is read when a file is fetched, not at
import, so setting one in a running process takes effect.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError
from promis_repro.io import atomic_write_bytes, cache_root, read_jsonl, sha256_of

log = logging.getLogger(__name__)

# the environment variables naming each host
GITHUB_RELEASES = "PROMIS_REPRO_GITHUB_RELEASES"
GITHUB_RAW = "PROMIS_REPRO_GITHUB_RAW"
HF_ENDPOINT = "HF_ENDPOINT"  # huggingface_hub's own setting
#: the real host when a setting is unset
ENDPOINTS = {
    GITHUB_RELEASES: "https://github.com",
    GITHUB_RAW: "https://raw.githubusercontent.com",
    HF_ENDPOINT: "https://huggingface.co",
}

#: google-research's revision of the MBPP files (PROVENANCE.md sections 1 and 2)
MBPP_COMMIT = "30adf0ec5f35f9609c2f1d896005e184195d9146"


def endpoint(variable: str) -> str:
    """The host a setting names now (``$variable``, else the real host), without a trailing slash."""
    return (os.environ.get(variable) or ENDPOINTS[variable]).rstrip("/")


@dataclass(frozen=True)
class Remote:
    """A file at ``path`` on the host a setting names; the path is the real host's layout."""

    host: str  # a key of ENDPOINTS
    path: str  # starts with "/"

    def url(self) -> str:
        return endpoint(self.host) + self.path


def sanitized_jsonl(data: bytes) -> bytes:
    """google-research's ``sanitized-mbpp.json`` (one JSON array) as JSONL, one ``json.dumps`` row a line.

    This is how ``shared/data/mbpp_sanitized.jsonl`` was made (PROVENANCE.md section 2), so the result
    must match that file's pin.
    """
    try:
        rows = json.loads(data)
    except ValueError as exc:
        raise UserError(f"is not JSON ({exc})") from None
    if not isinstance(rows, list):
        raise UserError("is not a JSON array")
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@dataclass(frozen=True)
class DataFile:
    name: str  # file name inside data_dir (and the cache)
    sha256: str | None  # None: not pinned (recorded, not checked)
    source: Remote | None  # original online source, fetched when no local copy exists
    description: str
    convert: Callable[[bytes], bytes] | None = None  # the source's bytes -> the file's (None: a byte copy)


DATA_FILES: dict[str, DataFile] = {
    "mbpp": DataFile(
        "mbpp.jsonl",
        "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
        Remote(GITHUB_RAW, f"/google-research/google-research/{MBPP_COMMIT}/mbpp/mbpp.jsonl"),
        "MBPP full (974 tasks), google-research at 30adf0ec",
    ),
    "mbpp_sanitized": DataFile(
        "mbpp_sanitized.jsonl",
        "502db01bcc1e911d691d5212bd3d9c60ee52bbc2bd29457a520ace424bb2709d",
        Remote(GITHUB_RAW, f"/google-research/google-research/{MBPP_COMMIT}/mbpp/sanitized-mbpp.json"),
        "MBPP sanitized (427 tasks), JSONL conversion of sanitized-mbpp.json at 30adf0ec",
        convert=sanitized_jsonl,
    ),
    "mbppplus": DataFile(
        "MbppPlus-v0.2.0.jsonl.gz",
        "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
        Remote(GITHUB_RELEASES, "/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz"),
        "EvalPlus MBPP+ v0.2.0 (378 tasks)",
    ),
    "humanevalplus": DataFile(
        "HumanEvalPlus-v0.1.10.jsonl.gz",
        "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
        Remote(GITHUB_RELEASES, "/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz"),
        "EvalPlus HumanEval+ v0.1.10 (164 tasks)",
    ),
    "apps": DataFile(
        "apps_mapcoder128.jsonl",
        "c2963d640276b44cefd56006c6077591e3212d73889c08444628c03d90363d71",
        None,  # local only; online, apps.load_apps_online reads the original test split (APPS_TEST)
        "APPS subset selected by MapCoder (128 problems)",
    ),
}


@dataclass(frozen=True)
class HubFile:
    """A file of a Hugging Face dataset repository at a fixed commit."""

    repo_id: str
    revision: str  # a commit: what a branch name points at can change, a commit cannot
    filename: str
    sha256: str
    description: str

    def label(self) -> str:
        return f"{self.filename} of {self.repo_id}@{self.revision[:8]}"


#: APPS's test split as the dataset repository stores it (the repo's ``apps.py`` loading script, which
#: ``datasets`` >= 4 refuses to run, only reads this file). The commit is the one several public
#: projects pin; the sha256 (of its 1,292,436,853 bytes) is the one three independent public projects
#: record and check for that commit. The hub is unreachable from where this was written, so it was
#: not recomputed here: a mismatch says so (and the file is not cached).
APPS_TEST = HubFile(
    "codeparrot/apps",
    "21e74ddf8de1a21436da12e3e653065c5213e9d1",
    "test.jsonl",
    "5b003a65ac40feb47dd5eaec267a767a6fc435bdcfa68ff715fe869f948e760c",
    "APPS test split (5,000 problems), original format",
)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (the hub's HTTP errors span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _download(url: str) -> bytes:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # follows the release host's redirects
            return response.read()
    except (OSError, ValueError, http.client.HTTPException) as exc:  # network, HTTP status, malformed URL
        raise UserError(f"could not download {url}: {_one_line(exc)}") from None


def _fetch(spec: DataFile, target: Path) -> None:
    """Download ``spec``, convert it, check its pin, and only then write it to ``target``.

    Nothing that fails the pin reaches the cache, so a later run never finds (and trusts) a tampered
    or truncated file there.
    """
    assert spec.source is not None
    url = spec.source.url()
    data = _download(url)
    if spec.convert is not None:
        try:
            data = spec.convert(data)
        except UserError as exc:
            raise UserError(f"{url} {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if spec.sha256 is not None and digest != spec.sha256:
        raise UserError(
            f"{spec.name} from {url} has sha256 {digest}, expected {spec.sha256} ({spec.description}): "
            "the server's copy is not the pinned release; nothing was cached"
        )
    atomic_write_bytes(target, data)


def local_copy(key: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The verified copy of a pinned file in ``data_dir``, else in the cache, else None.

    A data_dir copy that fails its pin is an error (it is the user's file); a cached one is dropped
    and fetched again (it is ours, e.g. written before the pin was checked on download).
    """
    spec = DATA_FILES[key]
    if data_dir is not None and (Path(data_dir) / spec.name).exists():
        return _verified(Path(data_dir) / spec.name, spec)
    cached = cache_root() / "data" / spec.name
    if cached.exists():
        if spec.sha256 is None or sha256_of(cached) == spec.sha256:
            return cached
        log.warning("cached %s has sha256 %s, expected %s; fetching it again", cached, sha256_of(cached), spec.sha256)
        cached.unlink()
    return None


def _verified(path: Path, spec: DataFile) -> Path:
    if spec.sha256 is not None and sha256_of(path) != spec.sha256:
        raise UserError(f"data file {path} has sha256 {sha256_of(path)}, expected {spec.sha256} ({spec.description})")
    return path


def resolve(key: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """The verified local path of a pinned data file; downloads it when no local copy exists."""
    spec = DATA_FILES[key]
    path = local_copy(key, data_dir)
    if path is not None:
        return path
    where = f" in {data_dir}" if data_dir is not None else ""
    missing = f"data file {spec.name} ({spec.description}) not found{where}"
    hint = "pass --data-dir pointing at a directory that holds it"
    if spec.source is None:
        raise UserError(f"{missing}, and it has no direct download; {hint}")
    target = cache_root() / "data" / spec.name
    try:
        _fetch(spec, target)
    except UserError as exc:
        raise UserError(f"{missing}, and {exc}; {hint}") from None
    return target


def resolve_hub(spec: HubFile) -> Path:
    """The verified local path of a hub file, downloaded through huggingface_hub into the cache.

    ``HF_ENDPOINT`` is read here and passed on: huggingface_hub reads it once, when it is imported.
    No token is sent: the file is public, and a mirror has no business receiving one.
    """
    import httpx2  # huggingface_hub >= 2's HTTP client (pyproject.toml pins huggingface_hub >= 2)
    from huggingface_hub import hf_hub_download

    host = endpoint(HF_ENDPOINT)
    try:
        path = Path(
            hf_hub_download(
                spec.repo_id,
                spec.filename,
                repo_type="dataset",
                revision=spec.revision,
                cache_dir=cache_root() / "huggingface",
                endpoint=host,
                token=False,
            )
        )
    except (OSError, ValueError, httpx2.HTTPError) as exc:  # hub errors are OSErrors; transport ones httpx2's
        raise UserError(f"could not download {spec.label()} from {host}: {_one_line(exc)}") from None
    digest = sha256_of(path)
    if digest != spec.sha256:
        _evict(path)
        raise UserError(
            f"{spec.label()} from {host} has sha256 {digest}, expected {spec.sha256} ({spec.description}): "
            "the server's copy is not the pinned file (the pin: public records of that commit, see "
            "data/sources.py); it was removed from the cache"
        )
    return path


def _evict(path: Path) -> None:
    """Remove a hub download (the snapshot link and the blob it points at) so no later run reuses it.

    huggingface_hub returns a cached snapshot of a commit without asking the server again.
    """
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


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
