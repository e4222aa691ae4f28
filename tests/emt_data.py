"""Labelled data for fitting tests: ASE EMT as the reference."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator


def label(atoms: Atoms, config_type: str, calc=None) -> Atoms:
    atoms.calc = calc or EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    extra = {"stress": atoms.get_stress()} if atoms.pbc.all() else {}
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, **extra)
    atoms.info["config_type"] = config_type
    return atoms


def emt_cu_dataset(seed: int, n_each: int) -> list[Atoms]:
    """Cu bulk at several strains, rattled cells, vacancies and (111) slabs, EMT-labelled."""
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))  # 32 atoms
    out = []
    for _ in range(n_each):
        atoms = base.copy()
        atoms.set_cell(atoms.cell * rng.uniform(0.96, 1.04), scale_atoms=True)
        atoms.rattle(0.01, seed=int(rng.integers(2**31)))
        out.append(label(atoms, "strain"))
    for _ in range(n_each):
        atoms = base.copy()
        atoms.rattle(rng.uniform(0.03, 0.12), seed=int(rng.integers(2**31)))
        out.append(label(atoms, "rattle"))
    for _ in range(n_each):
        atoms = base.copy()
        del atoms[int(rng.integers(len(atoms)))]
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        out.append(label(atoms, "vacancy"))
    for _ in range(n_each):
        atoms = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0)
        atoms.pbc = True
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        out.append(label(atoms, "slab"))
    return out
