"""Shared structures and small models for the test suite."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, diamond111, molecule

from mlff import ACEModel, OneBody, PairModel, Stack
from mlff.testing import random_linear_parameters

ELEMENTS = ("H", "C", "Si")
PAIR_CUTOFF = 4.5
ACE_CUTOFF = 4.0


def rattled_si() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.08, seed=1)
    return atoms


def triclinic_sic() -> Atoms:
    atoms = bulk("SiC", "zincblende", a=4.36).repeat((2, 1, 1))
    cell = atoms.cell.array @ np.array(
        [[1.0, 0.05, -0.04], [0.03, 0.97, 0.06], [-0.02, 0.04, 1.03]]
    )
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.05, seed=2)
    return atoms


def small_cell_si() -> Atoms:
    """Primitive Si: lattice vectors of 3.84 Å, far below twice the cutoff."""
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=3)
    return atoms


def si_slab() -> Atoms:
    atoms = diamond111("Si", (2, 2, 3), vacuum=6.0)
    atoms.rattle(0.05, seed=4)
    return atoms


def methane() -> Atoms:
    atoms = molecule("CH4")
    atoms.rattle(0.05, seed=5)
    return atoms


STRUCTURES = {
    "rattled-si": rattled_si,
    "triclinic-sic": triclinic_sic,
    "small-cell-si": small_cell_si,
    "si-slab": si_slab,
    "methane": methane,
}


def reference_mix() -> list[Atoms]:
    return [rattled_si(), triclinic_sic(), methane()]


def make_pair(repulsion: bool = True) -> PairModel:
    model = PairModel(ELEMENTS, cutoff=PAIR_CUTOFF, n_max=6, repulsion=repulsion)
    _randomize(model, seed=11)
    return model


def make_ace(max_degree=None) -> ACEModel:
    model = ACEModel(
        ELEMENTS,
        cutoff=ACE_CUTOFF,
        n_max=4,
        l_max=3,
        max_degree=max_degree or {1: 4, 2: 6, 3: 7, 4: 7},
    )
    _randomize(model, seed=12)
    return model


def make_onebody() -> OneBody:
    return OneBody({"H": -1.1, "C": -2.3, "Si": -0.7})


def make_stack() -> Stack:
    return Stack([make_onebody(), make_pair(), make_ace()])


def _randomize(model, seed: int) -> None:
    """θ scaled on a mix of structures so every element block gets sensible magnitudes."""
    mix = reference_mix()
    thetas = [random_linear_parameters(model, atoms, energy_scale=0.5, seed=seed) for atoms in mix]
    # Use the smallest per-column magnitude over the mix: no column dominates any structure.
    stacked = torch.stack(thetas)
    idx = stacked.abs().argmin(0)
    model.set_linear_parameters(stacked.gather(0, idx[None]).squeeze(0))


MODEL_FACTORIES = {
    "onebody": make_onebody,
    "pair": make_pair,
    "ace": make_ace,
    "stack": make_stack,
}
