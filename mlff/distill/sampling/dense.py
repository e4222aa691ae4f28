"""Crowding and random starts: squeezed clusters and random packings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from ase import Atoms

from mlff.distill.sampling.common import (
    Candidate,
    _check_count,
    _check_nonnegative,
    _periodic_distances,
    _rng,
    _sampling_frame,
)

# ---------------------------------------------------------------- crowding


def clusters(
    atoms: Atoms,
    n: int,
    seed: int = 0,
    size: int = 32,
    squeeze: Sequence[float] = (0.7, 1.0),
    vacuum: float = 6.0,
    rattle: float = 0.03,
) -> Iterator[Candidate]:
    """Compact clusters cut from ``atoms``, squeezed: crowding and short distances.

    A point is drawn uniformly in the cell; the ``size`` atoms nearest to it (periodic images
    included) form the cluster, which is scaled about its centroid by a factor drawn uniformly
    from ``squeeze`` (0.7: every distance, the nearest-neighbour ones included, at 0.7 of the
    crystal's) and rattled (σ = ``rattle`` Å). The cluster is non-periodic (pbc False), in an
    orthorhombic box with ``vacuum`` Å around it. ``meta["squeeze"]`` is the factor."""
    _check_count(n)
    _check_nonnegative(vacuum=vacuum, rattle=rattle)
    low, high = (float(v) for v in squeeze)
    if not (0.0 < low <= high):
        raise ValueError(f"squeeze must be (low, high) with 0 < low <= high, got {squeeze!r}")
    if not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    if not atoms.pbc.any() and size > len(atoms):
        raise ValueError(
            f"a non-periodic structure of {len(atoms)} atoms has no {size}-atom cluster"
        )
    pool = _images(atoms, size)  # (n_images * n_atoms,) Atoms without pbc
    rng = _rng(seed)
    basis, lo, hi = _sampling_frame(atoms)
    for k in range(n):
        centre = (lo + (hi - lo) * rng.random(3)) @ basis
        chosen = np.argsort(np.linalg.norm(pool.positions - centre, axis=1), kind="stable")[:size]
        out = pool[np.sort(chosen)]
        factor = float(rng.uniform(low, high))
        centroid = out.positions.mean(0)
        out.positions = centroid + factor * (out.positions - centroid)
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        out.pbc = False
        extent = out.positions.max(0) - out.positions.min(0)
        out.set_cell(np.diag(extent + 2.0 * vacuum))
        out.positions += vacuum - out.positions.min(0)
        meta = {
            "generator": "cluster",
            "size": int(size),
            "squeeze": factor,
            "centre": centre.tolist(),
            "rattle": rattle,
            "seed": seed,
            "index": k,
        }
        yield out, "cluster", meta


def _images(atoms: Atoms, size: int) -> Atoms:
    """``atoms`` and enough periodic images around it that the ``size`` atoms nearest to any
    point of the cell are among them (non-periodic, no cell)."""
    if not atoms.pbc.any():
        out = atoms.copy()
        out.pbc = False
        return out
    from mlff.geometry import periodic_widths

    volume_per_atom = abs(np.linalg.det(atoms.cell.array)) / len(atoms) if atoms.pbc.all() else 0
    if volume_per_atom <= 0:  # mixed pbc: the cell's volume means nothing; bound by the extent
        volume_per_atom = max(np.ptp(atoms.positions, axis=0).prod(), 1.0) / len(atoms)
    radius = 1.5 * (3.0 * size * volume_per_atom / (4.0 * np.pi)) ** (1.0 / 3.0)
    widths = periodic_widths(atoms.cell.array, atoms.pbc)
    reach = [int(np.ceil(radius / widths[a])) + 1 if atoms.pbc[a] else 0 for a in range(3)]
    base = atoms.copy()
    base.wrap()
    shifts = np.array(
        [
            (i, j, k)
            for i in range(-reach[0], reach[0] + 1)
            for j in range(-reach[1], reach[1] + 1)
            for k in range(-reach[2], reach[2] + 1)
        ]
    )  # (n_images, 3)
    offsets = shifts @ atoms.cell.array  # (n_images, 3)
    positions = (base.positions[None, :, :] + offsets[:, None, :]).reshape(-1, 3)
    numbers = np.tile(base.numbers, len(shifts))
    return Atoms(numbers=numbers, positions=positions, pbc=False)


def _contact_distances(atoms: Atoms, cutoff: float = 6.0) -> dict[tuple[int, int], float]:
    """For every pair of atomic numbers in ``atoms``, the shortest distance (Å, minimum image)
    between two such atoms, or the sum of their covalent radii if none are within ``cutoff``."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff, self_interaction=False)
    species = sorted(set(atoms.numbers.tolist()))
    out = {}
    for a in species:
        for b in species:
            mask = (atoms.numbers[i] == a) & (atoms.numbers[j] == b)
            out[a, b] = (
                float(d[mask].min()) if mask.any() else covalent_radii[a] + covalent_radii[b]
            )
    return out


def packings(
    atoms: Atoms,
    n: int,
    seed: int = 0,
    min_distance_factor: float = 0.75,
    trials: int = 200,
) -> Iterator[Candidate]:
    """Random packings: the atoms of ``atoms`` (3D-periodic) placed at random in its cell, a
    start for liquids that no lattice remembers (a small perfect crystal superheats far past
    its melting point instead of melting).

    The atoms are placed one by one in a random order; each at the best of ``trials`` random
    points, the one farthest, relative to the contact distance, from the atoms already placed
    (minimum image). The contact distance of a species pair is ``min_distance_factor`` × its
    shortest distance in ``atoms`` (the sum of covalent radii for a pair that has none within
    6 Å). Same cell, composition and density as ``atoms``. ``meta["closest_ratio"]`` is the
    smallest distance / contact distance reached (≥ 1 when every contact was kept)."""
    _check_count(n)
    if not atoms.pbc.all():
        raise ValueError(
            f"packings needs a 3D-periodic structure to fill; this one has pbc {atoms.pbc.tolist()}"
        )
    if not (np.isfinite(min_distance_factor) and 0 < min_distance_factor <= 1.5):
        raise ValueError(f"min_distance_factor must be in (0, 1.5], got {min_distance_factor!r}")
    if not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    contact = _contact_distances(atoms)
    species = sorted({a for a, _ in contact})
    table = np.array([[contact[a, b] for b in species] for a in species]) * min_distance_factor
    index = np.searchsorted(species, atoms.numbers)  # (n_atoms,) row of each atom in ``table``
    cell = atoms.cell.array
    rng = _rng(seed)
    for k in range(n):
        order = rng.permutation(len(atoms))
        scaled = np.zeros((len(atoms), 3))
        worst = np.inf
        for m, atom in enumerate(order):
            points = rng.random((trials, 3))  # (trials, 3) fractional
            if m:
                placed = order[:m]
                d = _periodic_distances(points, scaled[placed], cell)  # (trials, m)
                ratio = (d / table[index[atom], index[placed]]).min(axis=1)  # (trials,)
                best = int(np.argmax(ratio))
                worst = min(worst, float(ratio[best]))
            else:
                best = 0
            scaled[atom] = points[best]
        out = atoms.copy()
        out.positions = scaled @ cell
        meta = {
            "generator": "packing",
            "min_distance_factor": min_distance_factor,
            "closest_ratio": worst,
            "seed": seed,
            "index": k,
        }
        yield out, "packing", meta
