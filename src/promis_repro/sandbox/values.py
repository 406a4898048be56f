"""Decode values encoded by the sandbox child (see ``child.py`` for the format) into genuine builtins.

Decoding builds only builtin objects (plus marker subclasses that stand for
"an instance of a subclass of a builtin"), so comparing decoded values in the
harness process runs no code written by the program under test.
"""

from __future__ import annotations

import hashlib
import marshal
from typing import Any

_MARKERS: dict[tuple[type, str], type] = {}


class UndecodableValue(ValueError):
    pass


class Opaque:
    """A value of a type the sandbox could not encode; equal to nothing but itself."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<opaque {self.type_name}>"


class Digest:
    """A large value known by the sha256 of its marshal (version 2) form; equal to the same digest."""

    __slots__ = ("hexdigest",)

    def __init__(self, hexdigest: str) -> None:
        self.hexdigest = hexdigest

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Digest):
            return self.hexdigest == other.hexdigest
        digest = digest_of(other)
        return digest is not None and digest == self.hexdigest

    def __hash__(self) -> int:
        return hash(self.hexdigest)

    def __repr__(self) -> str:
        return f"<value with digest {self.hexdigest[:12]}>"


def digest_of(value: Any) -> str | None:
    """The digest the sandbox would send for ``value`` (None when marshal refuses it)."""
    try:
        return hashlib.sha256(marshal.dumps(value, 2)).hexdigest()
    except ValueError:
        return None


def marker_type(base: type, type_name: str) -> type:
    """A subclass of ``base`` named after the program's type.

    EvalPlus compares ``type(out) == type(exp)`` before its float tolerance
    check, so a namedtuple or numpy.float64 must not decode to a plain tuple or
    float; two values of the same foreign type decode to the same marker type.
    """
    if base is bool:  # bool cannot be subclassed
        return bool
    key = (base, type_name)
    if key not in _MARKERS:
        _MARKERS[key] = type(f"Foreign[{type_name}]", (base,), {})
    return _MARKERS[key]


def _base_of(value: Any) -> type | None:
    for cls in (bool, int, float, str, complex, bytes, tuple, list, dict, set, frozenset):
        if type(value) is cls:
            return cls
    return None


def decode(data: Any) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise UndecodableValue(f"unknown encoded value {str(data)[:80]}")
    if "t" in data:
        return tuple(decode(item) for item in data["t"])
    if "s" in data:
        return {decode(item) for item in data["s"]}
    if "fs" in data:
        return frozenset(decode(item) for item in data["fs"])
    if "d" in data:
        return {decode(key): decode(value) for key, value in data["d"]}
    if "ih" in data:
        return int(data["ih"], 16)
    if "b" in data:
        return bytes.fromhex(data["b"])
    if "c" in data:
        real, imag = data["c"]
        return complex(real, imag)
    if "digest" in data:
        return Digest(str(data["digest"]))
    if "opaque" in data:
        return Opaque(str(data["opaque"]))
    if "sub" in data and "v" in data:
        inner = decode(data["v"])
        base = _base_of(inner)
        if base is None:
            return inner
        return marker_type(base, str(data["sub"]))(inner)
    raise UndecodableValue(f"unknown encoded value {str(data)[:80]}")
