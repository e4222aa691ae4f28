"""The default student: ``OneBody(E0) + PairModel + ACEModel`` at one cutoff, as distillation
and ``mlff fit`` build it, and the check of the options a user may give its parts."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from mlff.models.ace import ACEModel
from mlff.models.onebody import OneBody
from mlff.models.pair import PairModel
from mlff.stack import Stack

__all__ = ["DEFAULT_ACE_INNER", "DEFAULT_PAIR", "check_part_options", "default_stack"]

#: The ACE radial basis switches off between these fractions of r0 unless ``ace.inner`` says
#: otherwise (``false`` for no switch), so that crowded, squeezed atoms beyond the data get
#: their energy from the pair part and its ZBL core; chosen by the hole scans measured in
#: docs/distillation.md.
DEFAULT_ACE_INNER = (0.55, 0.8)
DEFAULT_PAIR: dict[str, Any] = {"n_max": 8, "repulsion": True}
_FIXED = {"self", "elements", "cutoff"}  # set by the stack, not by the options


def check_part_options(options: Any, model: type, where: str) -> None:
    """Refuse options for ``model`` (``ACEModel`` or ``PairModel``) that are not a table or
    name a keyword its constructor does not take, naming the key and what is accepted."""
    accepted = sorted(set(inspect.signature(model.__init__).parameters) - _FIXED)
    if not isinstance(options, Mapping):
        raise ValueError(f"{where} = {options!r}; accepted a table with keys {accepted}")
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; accepted in {where}: "
            f"{', '.join(accepted)}"
        )


def default_stack(
    elements,
    e0: Mapping[str, float],
    cutoff: float = 5.0,
    ace: Mapping[str, Any] | None = None,
    pair: Mapping[str, Any] | None = None,
) -> Stack:
    """OneBody(E0) + PairModel (``pair``, default :data:`DEFAULT_PAIR`) + ACEModel (``ace``,
    with the inner switch :data:`DEFAULT_ACE_INNER` unless ``ace["inner"]`` is ``False``) at
    ``cutoff`` Å."""
    ace = dict(ace or {})
    pair = dict(DEFAULT_PAIR if pair is None else pair)
    check_part_options(ace, ACEModel, "ace")
    check_part_options(pair, PairModel, "pair")
    ace = {"inner": DEFAULT_ACE_INNER, **ace}
    if ace["inner"] is False:
        ace["inner"] = None
    return Stack(
        [
            OneBody(dict(e0)),
            PairModel(elements, cutoff=cutoff, **pair),
            ACEModel(elements, cutoff=cutoff, **ace),
        ]
    )
