"""Small helpers the sampling modules share: the candidate type, random generators, argument
checks, distances and the random-point frame of a cell."""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

Candidate = tuple[Atoms, str, dict]

#: Two atoms closer than this (Å) mean the structure has fallen apart (or overlaps).
_COLLAPSE_DISTANCE = 0.5


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_count(n) -> None:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n (the number of structures) must be an integer >= 0, got {n!r}")


def _check_nonnegative(**values) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def shortest_distance(atoms: Atoms, cutoff: float = 3.0) -> float:
    """The shortest distance (Å) between two atoms, images included along periodic directions
    (minimum image), or ``inf`` if no pair is closer than ``cutoff``; ``nan`` for non-finite
    positions."""
    from vesin import NeighborList

    if not np.isfinite(atoms.positions).all():
        return math.nan
    if len(atoms) < 2 and not atoms.pbc.any():
        return math.inf
    (d,) = NeighborList(cutoff=float(cutoff), full_list=False).compute(
        atoms.positions, atoms.cell.array, periodic=atoms.pbc, quantities="d"
    )
    return float(d.min()) if len(d) else math.inf


def _sampling_frame(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A basis (3, 3) whose periodic rows are the cell's and whose open rows are orthonormal to
    them, and the atoms' lowest and highest coordinates (3,) along it; random points are drawn
    uniformly in [0, 1) along periodic rows and between those bounds along open ones."""
    from mlff.geometry import search_cell

    basis = search_cell(atoms.cell.array, atoms.pbc)
    coords = atoms.positions @ np.linalg.inv(basis)  # (n_atoms, 3)
    lo = np.where(atoms.pbc, 0.0, coords.min(0))
    hi = np.where(atoms.pbc, 1.0, coords.max(0))
    return basis, lo, hi


def _periodic_distances(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) minimum-image distances (Å) between fractional coordinates ``a`` and
    ``b`` of a 3D-periodic ``cell``: the wrapped difference, and for a cell with oblique angles
    the 27 images around it."""
    diff = a[:, None, :] - b[None, :, :]  # (n_a, n_b, 3)
    diff -= np.round(diff)
    cart = diff @ cell  # (n_a, n_b, 3)
    square = np.einsum("abk,abk->ab", cart, cart)
    gram = cell @ cell.T
    if np.allclose(gram, np.diag(np.diag(gram)), atol=1e-9 * np.trace(gram)):  # orthorhombic
        return np.sqrt(square)
    shifts = np.array(np.meshgrid(*[(-1, 0, 1)] * 3)).reshape(3, -1).T @ cell  # (27, 3)
    # |r + s|² = |r|² + min over images s of (2 r·s + |s|²)
    extra = (2.0 * cart @ shifts.T + np.einsum("sk,sk->s", shifts, shifts)).min(axis=-1)
    return np.sqrt(np.maximum(square + extra, 0.0))
