"""Input checks on atoms and cells, and the cell the neighbour search works in.

Everything here runs before any compiled code sees a configuration: vesin's cell list and the
numba passes trap (SIGFPE) or silently drop edges on a non-finite, degenerate or astronomically
large geometry, so such input must be refused here with a message that names the bad value.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

__all__ = [
    "MAX_COORDINATE",
    "MAX_NEIGHBORS",
    "MAX_PERIODIC_IMAGES",
    "cell_volume",
    "check_atoms",
    "check_cell",
    "periodic_widths",
    "search_cell",
]

#: Largest |coordinate| (Å) of a position or a cell entry: 1 cm. float64 still resolves
#: 1e-8 Å there, and image shifts stay far inside vesin's int32 range for any cell wider than
#: 0.05 Å. Beyond it, positions lose the precision forces need (an atom 10¹² lattice vectors
#: away is resolved to 1e-3 Å) and the cell list's integer arithmetic overflows.
MAX_COORDINATE = 1e8

#: Most periodic images of one pair within the search radius (the product over periodic
#: directions of 2·⌈reach / width⌉ + 1). A cell thinner than about 1/50 of the cutoff in all
#: three directions reaches it; the search would then take minutes or overflow.
MAX_PERIODIC_IMAGES = 10**6

#: Most neighbours per atom within the search radius (an estimate from above, see
#: ``mlff.graph``): dense solids have about 100 within 5.5 Å. Past this the input is in the
#: wrong units or squeezed beyond physics, and the edges alone would take gigabytes.
MAX_NEIGHBORS = 10**4

#: Relative width (width / vector length) below which periodic cell vectors count as
#: linearly dependent.
_DEGENERATE = 1e-8


def cell_volume(cell) -> float:
    """|det cell| (Å^3) of a (3, 3) cell (nested sequence or array) as a triple product on
    Python floats: np.linalg.det costs more than the rest of the check, every MD step."""
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = cell
    return abs(ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx))


def check_atoms(atoms: Atoms) -> None:
    """Raise ``ValueError`` (``TypeError`` for a non-Atoms) for input no model can evaluate:
    no atoms, atomic numbers outside 1–118, non-finite or out-of-range positions, or a bad cell
    (:func:`check_cell`)."""
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("atoms has zero atoms; a structure needs at least one atom")
    numbers = atoms.numbers
    if numbers.min() < 1 or numbers.max() >= len(chemical_symbols):
        bad = np.flatnonzero((numbers < 1) | (numbers >= len(chemical_symbols)))
        raise ValueError(
            f"atoms {bad[:10].tolist()} have atomic numbers {numbers[bad[:10]].tolist()}; "
            f"atomic numbers must be 1 to {len(chemical_symbols) - 1}"
        )
    positions = atoms.positions
    if not np.abs(positions).max() <= MAX_COORDINATE:  # one reduction; NaN fails it too
        _check_positions(positions)
    check_cell(atoms.cell.array, atoms.pbc)


def _check_positions(positions: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if len(bad):
        raise ValueError(
            f"positions of atoms {bad[:10].tolist()} are not finite (NaN or inf); "
            "all positions must be finite numbers in Å"
        )
    far = np.flatnonzero(np.abs(positions).max(axis=1) > MAX_COORDINATE)
    if len(far):
        raise ValueError(
            f"atoms {far[:10].tolist()} lie {np.abs(positions[far[0]]).max():.3g} Å "
            "from the origin; "
            f"positions up to {MAX_COORDINATE:.0e} Å are accepted (wrap a periodic system with "
            "atoms.wrap())"
        )


def check_cell(cell: np.ndarray, pbc) -> None:
    """Raise ``ValueError`` for a cell no neighbour search can use: a non-finite entry, an
    entry beyond :data:`MAX_COORDINATE`, or periodic vectors that are zero or linearly
    dependent. A non-periodic direction's vector may be anything finite (zero included)."""
    rows = np.asarray(cell, dtype=float).tolist()  # Python floats: these checks run every MD call
    if not all(abs(x) <= MAX_COORDINATE for row in rows for x in row):  # NaN fails too
        _refuse_cell_entry(np.array(rows))
    periodic = [ax for ax in range(3) if pbc[ax]]
    if not periodic:
        return
    flat = [ax for ax in periodic if _norm(rows[ax]) == 0.0]
    if flat:
        raise ValueError(
            f"pbc is {np.asarray(pbc, dtype=bool).tolist()} but cell vectors {flat} "
            "have zero length; a periodic "
            "direction needs a non-zero cell vector"
        )
    widths = periodic_widths(rows, pbc)
    if any(widths[ax] <= _DEGENERATE * _norm(rows[ax]) for ax in periodic):
        raise ValueError(
            f"the periodic cell vectors {periodic} are linearly dependent "
            f"(pbc {np.asarray(pbc, dtype=bool).tolist()}, "
            f"cell {rows}); periodic directions need independent cell vectors"
        )


def _refuse_cell_entry(cell: np.ndarray) -> None:
    if not np.isfinite(cell).all():
        row, col = np.argwhere(~np.isfinite(cell))[0]
        raise ValueError(
            f"cell entry [{row}][{col}] is {cell[row, col]}; "
            "every cell entry must be a finite number "
            "of Å (a non-periodic direction may have a zero vector)"
        )
    row, col = np.unravel_index(np.abs(cell).argmax(), cell.shape)
    raise ValueError(
        f"cell entry [{row}][{col}] is {cell[row, col]:.3g} Å; "
        f"cell entries up to {MAX_COORDINATE:.0e} Å "
        "are accepted (make a direction that needs more room non-periodic)"
    )


def periodic_widths(cell: np.ndarray | list, pbc) -> np.ndarray:
    """(3,) Å: for each periodic direction, the distance between the lattice planes the other
    periodic vectors span (the cell's thickness along it); inf along open directions.

    With three periodic vectors this is V / |b × c|; with two, |a × b| / |b|; with one, |a|.
    Cross products, not a Gram determinant, so a degenerate cell comes out at rounding level;
    on Python floats, since numpy's cross of two 3-vectors costs more than the arithmetic.
    """
    rows = cell if isinstance(cell, list) else np.asarray(cell, dtype=float).tolist()
    widths = [math.inf] * 3
    periodic = [ax for ax in range(3) if pbc[ax]]
    if len(periodic) == 3:
        volume = cell_volume(rows)
        for ax in range(3):
            widths[ax] = volume / max(_norm(_cross(rows[ax - 2], rows[ax - 1])), 1e-300)
    elif len(periodic) == 2:
        a, b = periodic
        area = _norm(_cross(rows[a], rows[b]))
        widths[a] = area / max(_norm(rows[b]), 1e-300)
        widths[b] = area / max(_norm(rows[a]), 1e-300)
    elif periodic:
        widths[periodic[0]] = _norm(rows[periodic[0]])
    return np.array(widths)


def _cross(u: list[float], v: list[float]) -> list[float]:
    return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]


def _norm(u: list[float]) -> float:
    return math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])


def search_cell(cell: np.ndarray, pbc) -> np.ndarray:
    """(3, 3) Å: ``cell`` with each non-periodic vector replaced by a unit vector orthogonal to
    the periodic ones, so the neighbour search always inverts a well-conditioned matrix.

    Image shifts along open directions are zero, so ``S · cell`` and every edge vector are the
    same with either cell; the user's open vectors (zero, tilted or of any length) never enter
    the arithmetic. vesin makes the same replacement internally. A fully periodic ``cell`` is
    returned as it is, not copied.
    """
    pbc = np.asarray(pbc, dtype=bool)
    if pbc.all():  # the common case, on every MD step whose cell changed: no copy
        return np.asarray(cell, dtype=np.float64)
    out = np.array(cell, dtype=np.float64)
    periodic = out[pbc]
    # Orthonormal complement of the periodic span, from the SVD's trailing right vectors.
    basis = np.linalg.svd(periodic)[2][len(periodic) :] if len(periodic) else np.eye(3)
    out[~pbc] = basis
    return out
