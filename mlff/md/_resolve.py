"""Lists of user choices turned canonical, in order, without repeats."""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["resolve_list"]


def resolve_list(items: Iterable, resolve: Callable, what: str, accepted: str) -> list:
    """``[resolve(x) for x in items]`` in order without repeats; a lone string or integer is
    one item, and an empty list raises ``ValueError`` naming ``what`` and ``accepted``."""
    out: list = []
    for item in [items] if isinstance(items, (str, int)) else items:
        key = resolve(item)
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"give at least one {what}; accepted: {accepted}")
    return out
