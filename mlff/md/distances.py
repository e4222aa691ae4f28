"""Shortest interatomic distance (Å), periodic images included, via vesin."""

from __future__ import annotations

import numpy as np
import vesin
from ase import Atoms

__all__ = ["min_distance"]


def min_distance(atoms: Atoms, cutoff: float | None = None) -> float | None:
    """The shortest distance between two atoms (or an atom and an image of itself), in Å.

    With ``cutoff`` only pairs closer than it are looked at, and ``None`` means none is;
    without it the search widens from 3 Å up to 24 Å before giving up (``None``).
    """
    cutoffs = [cutoff] if cutoff is not None else [3.0, 6.0, 12.0, 24.0]
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    for c in cutoffs:
        nl = vesin.NeighborList(cutoff=float(c), full_list=False)
        distances = nl.compute(
            points=positions, box=atoms.cell.array, periodic=atoms.pbc.tolist(), quantities="d"
        )
        distances = np.asarray(distances[0] if isinstance(distances, (list, tuple)) else distances)
        if distances.size:
            return float(distances.min())
    return None
