"""Seed structures and candidate generators. Every generator takes a seed and is reproducible.

A generator yields ``(atoms, config_type, meta)`` triples; ``meta`` records how the structure
was made so the store can keep it next to the label.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk, make_supercell

__all__ = ["PRESETS", "seed_structure", "supercell", "rattled", "strained", "vacancies", "surfaces"]

Candidate = tuple[Atoms, str, dict]


def _quartz() -> Atoms:
    from ase.spacegroup import crystal

    return crystal(
        ("Si", "O"),
        basis=[(0.4697, 0.0, 0.0), (0.4135, 0.2669, 0.1191)],
        spacegroup=154,
        cellpar=[4.916, 4.916, 5.405, 90, 90, 120],
    )


PRESETS: dict[str, Callable[[], Atoms]] = {
    "Si-diamond": lambda: bulk("Si", "diamond", a=5.43, cubic=True),
    "C-diamond": lambda: bulk("C", "diamond", a=3.567, cubic=True),
    "Ge-diamond": lambda: bulk("Ge", "diamond", a=5.658, cubic=True),
    "Cu-fcc": lambda: bulk("Cu", "fcc", a=3.61, cubic=True),
    "Al-fcc": lambda: bulk("Al", "fcc", a=4.05, cubic=True),
    "Ni-fcc": lambda: bulk("Ni", "fcc", a=3.52, cubic=True),
    "Fe-bcc": lambda: bulk("Fe", "bcc", a=2.87, cubic=True),
    "W-bcc": lambda: bulk("W", "bcc", a=3.165, cubic=True),
    "SiO2-quartz": _quartz,
}


def seed_structure(name_or_path: str) -> Atoms:
    """A preset (see ``PRESETS``) or any file ASE can read (the last frame)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]()
    if os.path.exists(name_or_path):
        from ase.io import read

        return read(name_or_path, index=-1)
    raise ValueError(
        f"unknown structure {name_or_path!r}: not a file and not a preset; "
        f"presets: {', '.join(PRESETS)}"
    )


def supercell(atoms: Atoms, target_atoms: int) -> Atoms:
    """The smallest diagonal repeat of ``atoms`` with at least ``target_atoms`` atoms, keeping it
    as close to cubic as the cell allows."""
    if target_atoms < 1:
        raise ValueError(f"target_atoms must be >= 1, got {target_atoms}")
    lengths = atoms.cell.lengths()
    reps = [1, 1, 1]
    while len(atoms) * np.prod(reps) < target_atoms:
        axis = int(np.argmin([lengths[k] * reps[k] for k in range(3)]))
        reps[axis] += 1
    return make_supercell(atoms, np.diag(reps)) if reps != [1, 1, 1] else atoms.copy()


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def rattled(
    atoms: Atoms, n: int, sigma: Sequence[float] = (0.02, 0.15), seed: int = 0
) -> Iterator[Candidate]:
    """Gaussian displacements with σ drawn uniformly from ``sigma`` (Å)."""
    rng = _rng(seed)
    for k in range(n):
        s = float(rng.uniform(*sigma))
        out = atoms.copy()
        out.positions += rng.normal(0.0, s, out.positions.shape)
        yield out, "rattle", {"generator": "rattle", "sigma": s, "seed": seed, "index": k}


def strained(
    atoms: Atoms, n: int, max_strain: float = 0.05, rattle: float = 0.03, seed: int = 0
) -> Iterator[Candidate]:
    """Random symmetric strains with components up to ``max_strain``, plus a small rattle."""
    rng = _rng(seed)
    for k in range(n):
        eps = rng.uniform(-max_strain, max_strain, (3, 3))
        eps = 0.5 * (eps + eps.T)
        out = atoms.copy()
        out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        yield (
            out,
            "strain",
            {"generator": "strain", "strain": eps.tolist(), "seed": seed, "index": k},
        )


def vacancies(atoms: Atoms, n: int, rattle: float = 0.05, seed: int = 0) -> Iterator[Candidate]:
    """One atom removed at random, then rattled."""
    if len(atoms) < 2:
        raise ValueError("a vacancy needs a structure with at least 2 atoms")
    rng = _rng(seed)
    for k in range(n):
        out = atoms.copy()
        site = int(rng.integers(len(out)))
        del out[site]
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        yield out, "vacancy", {"generator": "vacancy", "site": site, "seed": seed, "index": k}


def surfaces(
    atoms: Atoms, n: int, vacuum: float = 8.0, rattle: float = 0.05, seed: int = 0
) -> Iterator[Candidate]:
    """A slab: the cell is opened by ``vacuum`` Å along a random lattice direction (still 3D
    periodic, so stress stays defined), then rattled."""
    rng = _rng(seed)
    for k in range(n):
        axis = int(rng.integers(3))
        out = atoms.copy()
        out.wrap()
        cell = out.cell.array.copy()
        cell[axis] *= 1.0 + vacuum / np.linalg.norm(cell[axis])
        out.set_cell(cell, scale_atoms=False)
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        yield (
            out,
            "surface",
            {"generator": "surface", "axis": axis, "vacuum": vacuum, "seed": seed, "index": k},
        )
