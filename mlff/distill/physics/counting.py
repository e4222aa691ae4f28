"""The calculator wrapper that counts teacher and student evaluations, and the cost bookkeeping
of the physics results."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, Calculator, all_changes

__all__ = ["CountingCalculator", "total_calls"]

# ----------------------------------------------------------------------------------------------
# counting calculator


class CountingCalculator(Calculator):
    """An ASE calculator that forwards every evaluation to ``calc`` and counts them.

    Attributes:
        calc: the wrapped calculator.
        calls: evaluations forwarded to ``calc`` (cache hits are not evaluations).
        atoms_evaluated: total number of atoms in those evaluations.
        always: properties requested together with whatever was asked (default energy and
            forces, so an optimizer's forces-then-energy requests cost one call).

    A ``CountingCalculator`` passed to the functions of this package is used as it is, so one
    instance can count a whole session.
    """

    def __init__(self, calc: BaseCalculator, always: Sequence[str] = ("energy", "forces")):
        if not isinstance(calc, BaseCalculator):
            raise TypeError(f"expected an ASE calculator, got {type(calc).__name__}")
        super().__init__()
        self.calc = calc
        implemented = list(getattr(calc, "implemented_properties", ()) or ())
        self.implemented_properties = implemented or ["energy", "free_energy", "forces", "stress"]
        self.always = tuple(always)
        self.calls = 0
        self.atoms_evaluated = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        extra = [p for p in self.always if p in self.implemented_properties]
        wanted = list(dict.fromkeys([*properties, *extra]))
        self.calls += 1
        self.atoms_evaluated += len(self.atoms)
        # The ASE idiom for forwarding (see ase.calculators.mixing): the inner calculator's own
        # cache is bypassed because ours just missed.
        self.calc.calculate(self.atoms.copy(), wanted, all_changes)
        self.results = {
            key: value.copy() if isinstance(value, np.ndarray) else value
            for key, value in self.calc.results.items()
        }

    @contextmanager
    def requesting(self, *names: str) -> Iterator[CountingCalculator]:
        """Within the block, also ask for ``names`` (e.g. "stress") on every evaluation."""
        before = self.always
        self.always = tuple(dict.fromkeys([*before, *names]))
        try:
            yield self
        finally:
            self.always = before

    def tally(self) -> tuple[int, int]:
        """(calls, atoms_evaluated) so far."""
        return self.calls, self.atoms_evaluated


def _counting(calc: BaseCalculator) -> CountingCalculator:
    return calc if isinstance(calc, CountingCalculator) else CountingCalculator(calc)


def _cost(counter: CountingCalculator, start: tuple[int, int]) -> dict:
    calls, atoms = counter.tally()
    return {"calls": calls - start[0], "atoms_evaluated": atoms - start[1]}


def total_calls(result: Mapping[str, Any]) -> int:
    """Calculator calls summed over the sections of a :func:`crystal_physics` /
    :func:`liquid_physics` result (or a merge of both)."""
    return sum(
        int(section.get("calls", 0)) for section in result.values() if isinstance(section, Mapping)
    )


def _attach(atoms: Atoms, counter: CountingCalculator) -> Atoms:
    out = atoms.copy()
    out.calc = counter
    return out
