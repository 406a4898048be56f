"""Settings dataclasses from YAML mappings: one checker for the strategy, PPO and GRPO settings.

Unknown keys and values of the wrong type are refused with one line naming where the mapping came
from and the key, so a typo in a config costs seconds, not a failed cluster job.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from promis_repro.errors import UserError

T = TypeVar("T")


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    """``value`` as the type of the field's default (int for float, list for tuple); else a one-line error."""
    if default is dataclasses.MISSING or default is None:
        return value  # no default to compare with (factories, optional fields)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, type(default)) and isinstance(value, bool) == isinstance(default, bool):
        return value
    raise UserError(f"{where}: {key} must be {type(default).__name__}, got {value!r}")


def from_mapping(cls: type[T], values: dict[str, Any] | None, where: str) -> T:
    """``cls(**values)`` after checking keys and types; then the class's own ``check(where)``, if it has one."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    checked = {}
    for key, value in (values or {}).items():
        if key not in fields:
            raise UserError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(fields))}")
        checked[key] = _coerce(key, value, fields[key].default, where)
    config = cls(**checked)
    check = getattr(config, "check", None)
    if check is not None:
        check(where)
    return config
