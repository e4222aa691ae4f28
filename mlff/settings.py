"""Run settings: dataclasses made from TOML tables (unknown keys refused), and written back
as TOML (``--print-config``: Python's ``tomllib`` reads TOML but does not write it, and the
settings are plain tables of numbers, strings, lists and tables)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

__all__ = ["dumps", "from_mapping"]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML has no {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _key(key: Any) -> str:
    key = str(key)
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def dumps(settings: Mapping[str, Any], notes: Mapping[str, str] | None = None) -> str:
    """``settings`` as TOML: scalars and lists first, then one ``[table]`` per mapping. A
    ``None`` value (no TOML equivalent) is written as a comment with its note."""
    notes = notes or {}
    lines: list[str] = []
    tables = []
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            tables.append((key, value))
        elif value is None:
            lines.append(f"# {_key(key)} = ...  ({notes.get(key, 'unset')})")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables:
        lines += ["", f"[{_key(key)}]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def from_mapping(cls, data: Mapping[str, Any]):
    """``cls(**data)`` for a settings dataclass, after refusing keys it does not have (named,
    with the known ones), then ``validate()``d."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    config = cls(**dict(data))
    config.validate()
    return config
