"""Element bookkeeping: symbols ↔ per-model species indices."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import torch
from ase.data import atomic_numbers, chemical_symbols

__all__ = ["normalize_elements", "species_lookup", "species_of"]


def normalize_elements(elements: Iterable[str | int]) -> tuple[str, ...]:
    """Validated element symbols, in the caller's order, with duplicates refused."""
    if isinstance(elements, (str, numbers.Integral)):
        elements = [elements]
    symbols: list[str] = []
    for e in elements:
        if isinstance(e, numbers.Integral) and 0 < int(e) < len(chemical_symbols):
            symbol = chemical_symbols[int(e)]
        elif isinstance(e, str) and e in atomic_numbers and e != "X":
            symbol = e
        else:
            raise ValueError(
                f"unknown element {e!r}; give chemical symbols such as 'Si' or atomic numbers 1-118"
            )
        if symbol in symbols:
            raise ValueError(f"element {symbol!r} is listed twice in {list(elements)}")
        symbols.append(symbol)
    if not symbols:
        raise ValueError("a model needs at least one element")
    return tuple(symbols)


def species_lookup(elements: Sequence[str]) -> torch.Tensor:
    """(119,) int64 table: atomic number → species index, -1 where the element is unknown."""
    table = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
    for s, symbol in enumerate(elements):
        table[atomic_numbers[symbol]] = s
    return table


def species_of(
    numbers: torch.Tensor, table: torch.Tensor, elements: Sequence[str], owner: str
) -> torch.Tensor:
    """(n_atoms,) species indices of ``numbers``; raises naming any element ``owner`` lacks."""
    species = table[numbers]
    if bool((species < 0).any()):
        unknown = sorted({chemical_symbols[int(z)] for z in numbers[species < 0].unique()})
        raise ValueError(
            f"element(s) {', '.join(unknown)} not known to {owner}; "
            f"known elements: {', '.join(elements)}"
        )
    return species
