"""Calculators with known behaviour for the MD-tool tests: wrappers around real ones (EMT, the
harmonic crystal) that slow them down, leak, or break energy conservation on purpose."""

from __future__ import annotations

import mmap
import time

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

from mlff.testing import HarmonicCrystal


class Wrapped(Calculator):
    """Runs ``inner`` and lets a subclass change its results in ``adjust``."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, inner: Calculator):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        self.inner.calculate(self.atoms, properties, system_changes)
        self.results = {
            k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in self.inner.results.items()
        }
        self.adjust()

    def adjust(self) -> None:
        pass


class Slow(Wrapped):
    """Sleeps ``delay_s`` per call: its time per call is known from below."""

    def __init__(self, inner, delay_s: float, log: list | None = None, label: str = ""):
        super().__init__(inner)
        self.delay_s, self.log, self.label = delay_s, log, label

    def adjust(self):
        if self.log is not None:
            self.log.append(self.label)
        time.sleep(self.delay_s)


class Leaky(Wrapped):
    """Keeps a numpy array of ``nbytes`` per call (visible to tracemalloc). Whether RSS grows
    depends on the allocator: it may reuse pages an earlier test freed."""

    def __init__(self, inner, nbytes: int):
        super().__init__(inner)
        self.nbytes, self.hoard = nbytes, []

    def adjust(self):
        self.hoard.append(np.ones(self.nbytes // 8))


class PageLeak(Wrapped):
    """Keeps ``nbytes`` of new anonymous memory per call, every page written: RSS grows by
    exactly that much whatever the allocator holds."""

    def __init__(self, inner, nbytes: int):
        super().__init__(inner)
        self.nbytes, self.hoard = nbytes, []

    def adjust(self):
        block = mmap.mmap(-1, self.nbytes)
        np.frombuffer(block, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
        self.hoard.append(block)


class ScaledForces(Wrapped):
    """Forces × ``factor``, energy unchanged: not the gradient of the energy it reports."""

    def __init__(self, inner, factor: float):
        super().__init__(inner)
        self.factor = factor

    def adjust(self):
        self.results["forces"] = self.results["forces"] * self.factor


class ConstantForce(Wrapped):
    """Adds the same force (eV/Å) to every atom without the matching energy term: the centre
    of mass accelerates and the reported total energy climbs."""

    def __init__(self, inner, force):
        super().__init__(inner)
        self.force = np.asarray(force, dtype=np.float64)

    def adjust(self):
        self.results["forces"] = self.results["forces"] + self.force


def copper(n_atoms: int = 32, a: float = 3.61) -> Atoms:
    from mlff.distill.sampling import supercell

    return supercell(bulk("Cu", "fcc", a=a, cubic=True), n_atoms)


def harmonic_copper(k: float = 20.0, n_atoms: int = 32) -> tuple[Atoms, HarmonicCrystal]:
    """32 Cu atoms on springs of ``k`` eV/Å² (period 2π√(m/k) ≈ 114 fs for k = 20)."""
    atoms = copper(n_atoms)
    return atoms, HarmonicCrystal(atoms, k=k)
