"""Reading and atomic writing of the project's files, file hashes and the cache location, shared by every stage."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from promis_repro.errors import UserError


def cache_root() -> Path:
    """``$PROMIS_REPRO_CACHE``, else ``$XDG_CACHE_HOME/promis-repro``, else ``~/.cache/promis-repro``."""
    explicit = os.environ.get("PROMIS_REPRO_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "promis-repro"


T = TypeVar("T")


def _checksum(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0


class ChecksummedEntries:
    """A cache's entries: ``root/<key[:2]>/<key>.json``, each holding its key and a sha256 of its payload.

    Written to a temporary file and renamed into place (atomic on POSIX and NFS), so many SLURM jobs can
    share one directory with no database and no locks.
    """

    def __init__(self, root: str | os.PathLike[str], field: str) -> None:
        self.root = Path(root)
        self.field = field  # the payload's name in an entry ("completion", "result", "text")

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def read(self, key: str, decode: Callable[[Any], T]) -> tuple[T | None, str | None]:
        """``(decode(payload), None)``; ``(None, None)`` for a missing entry; ``(None, why)`` for a truncated,
        corrupt or mismatched entry or one ``decode`` rejects, which is removed (the caller makes it again)."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
            payload = entry[self.field]
            if entry.get("key") != key or entry.get("checksum") != _checksum(payload):
                raise ValueError("key or checksum mismatch")
            return decode(payload), None
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            return None, str(exc) or type(exc).__name__

    def write(self, key: str, payload: Any, **meta: Any) -> None:
        entry = {"key": key, "checksum": _checksum(payload), self.field: payload, **meta}
        # ASCII escapes: a lone surrogate (a program's output quoted in a failure) still writes
        atomic_write_text(self.path(key), json.dumps(entry))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    Readers (other SLURM jobs, a rerun after a kill) see either the old file or
    the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))


# -- reading ----------------------------------------------------------------------------------------------


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a (possibly gzipped) JSONL file with their 1-based line numbers; blank lines are skipped.

    A file that cannot be read, a line that is not JSON or a row that is not an object is a one-line
    ``UserError`` naming the file and line.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise UserError(f"{path}:{number}: malformed JSON row ({exc})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{number}: row is not a JSON object")
                yield number, row
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable JSON ({exc})") from None


def read_yaml_mapping(path: str | os.PathLike[str] | None, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping (``{}`` for no file or an empty one); anything else is a one-line error."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold a mapping")
    return data


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (remembered per path, size and modification time)."""
    stat = os.stat(path)
    return _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_outputs(
    out: str | os.PathLike[str], rows: dict[str, Iterable[dict[str, Any]]], records: dict[str, Any]
) -> Path:
    """A stage's JSONL files, then its JSON records (whose presence marks the stage done), each atomically."""
    out = Path(out)
    for name, file_rows in rows.items():
        atomic_write_jsonl(out / name, file_rows)
    for name, record in records.items():
        atomic_write_json(out / name, record)
    return out
