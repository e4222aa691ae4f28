"""Compiled passes over neighbour lists for :mod:`mlff.graph`: grouping a search's pairs by
center, the edges of a kept Verlet list, center offsets and the shortest edge."""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "center_offsets_into",
    "group_by_center",
    "kept_edges_within",
    "pairs_within",
    "shift_vectors_into",
    "shortest_edge",
]


@numba.njit(cache=True, nogil=True)
def group_by_center(i, j, shifts, vectors, wrapped, n_atoms, cutoff2):
    """The pairs (n,) i, j, (n, 3) shifts S' and vectors of a search, grouped by centre in
    increasing order, with S put back in the caller's frame (x' = x − n·cell: S = S' + n_i −
    n_j, ``wrapped`` (n_atoms, 3) the n of each atom) and only those shorter than
    ``sqrt(cutoff2)`` kept: i, j (m,) int64, S (m, 3) int64, vectors (m, 3) float64.

    A counting sort over the centres: linear, stable (within a centre, the search's order), and
    it merges gap-separated groups too. vesin's ``sorted=True`` is a comparison sort through
    an index array, and costs more than the search's own scan on MD-sized cells."""
    n = i.shape[0]
    start = np.zeros(n_atoms + 1, dtype=np.int64)
    inside = np.empty(n, dtype=np.bool_)
    for e in range(n):
        x, y, z = vectors[e, 0], vectors[e, 1], vectors[e, 2]
        inside[e] = x * x + y * y + z * z < cutoff2
        if inside[e]:
            start[i[e] + 1] += 1
    for a in range(n_atoms):
        start[a + 1] += start[a]
    m = start[n_atoms]
    centers, neighbors = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
    image_shifts, grouped = np.empty((m, 3), dtype=np.int64), np.empty((m, 3))
    for e in range(n):
        if inside[e]:
            a, b = i[e], j[e]
            k = start[a]
            start[a] = k + 1
            centers[k], neighbors[k] = a, b
            for d in range(3):
                image_shifts[k, d] = shifts[e, d] + wrapped[a, d] - wrapped[b, d]
                grouped[k, d] = vectors[e, d]
    return centers, neighbors, image_shifts, grouped


@numba.njit(cache=True, nogil=True)
def shift_vectors_into(shifts, cell, vectors) -> None:
    for p in range(shifts.shape[0]):
        a, b, c = shifts[p, 0], shifts[p, 1], shifts[p, 2]
        for d in range(3):
            vectors[p, d] = a * cell[0, d] + b * cell[1, d] + c * cell[2, d]


@numba.njit(cache=True, nogil=True)
def pairs_within(
    positions, pair_start, j, shift_vectors, cutoff2, centers, neighbors, vectors, pairs, offsets
):
    """The candidate pairs (a, j[p], S_p·cell) of a list grouped by centre (atom a's pairs
    are p = pair_start[a] … pair_start[a + 1] − 1) closer than the cutoff, in order: writes
    their (n,) centers, neighbors and, unless ``pairs`` is empty, positions in the list,
    (n, 3) vectors r = x_j − x_a + S·cell (``shift_vectors`` (n_pairs, 3) Å: S·cell) and the
    (n_atoms + 1,) centre offsets; returns n and the smallest squared length kept (inf without
    edges), for the overlap check.

    Branch-free: every pair is written at slot n, which advances only past pairs within the
    cutoff (about a third of a skin list's pairs are not, in no order a predictor follows)."""
    keep_pairs = pairs.shape[0] > 0
    n = 0
    shortest = np.inf
    for a in range(pair_start.shape[0] - 1):
        offsets[a] = n
        xa, ya, za = positions[a, 0], positions[a, 1], positions[a, 2]
        for p in range(pair_start[a], pair_start[a + 1]):
            b = j[p]
            x = positions[b, 0] - xa + shift_vectors[p, 0]
            y = positions[b, 1] - ya + shift_vectors[p, 1]
            z = positions[b, 2] - za + shift_vectors[p, 2]
            r2 = x * x + y * y + z * z
            centers[n] = a
            neighbors[n] = b
            if keep_pairs:
                pairs[n] = p
            vectors[n, 0] = x
            vectors[n, 1] = y
            vectors[n, 2] = z
            inside = r2 < cutoff2
            shortest = min(shortest, r2 if inside else np.inf)
            n += inside
    offsets[pair_start.shape[0] - 1] = n
    return n, shortest


@numba.njit(cache=True, nogil=True)
def center_offsets_into(centers, start) -> bool:
    """start (n_atoms + 1,): where each centre's edges begin, if the edges are grouped by
    centre (the graph convention); returns False, leaving start undefined, if they are not."""
    n_atoms = start.shape[0] - 1
    previous = 0
    start[0] = 0
    for e in range(centers.shape[0]):
        c = centers[e]
        if c < previous or c >= n_atoms:
            return False
        while previous < c:
            previous += 1
            start[previous] = e
    for i in range(previous + 1, n_atoms + 1):
        start[i] = centers.shape[0]
    return True


@numba.njit(cache=True, nogil=True)
def kept_edges_within(
    positions,
    numbers,
    pbc,
    cell,
    built_positions,
    built_numbers,
    built_pbc,
    built_cell,
    pair_start,
    j,
    shift_vectors,
    cutoff2,
    half_skin2,
):
    """One pass of an MD step on a kept Verlet list, for the usual case (same atoms, pbc and
    cell as at the build; finite positions; no atom moved more than skin/2): the pairs closer
    than the cutoff (:func:`pairs_within`) as (n, smallest squared length kept or inf,
    centers (n,), neighbors (n,), vectors (n, 3), centre offsets (n_atoms + 1,)). Returns
    n = -1 and empty arrays where the step needs the general path
    (:meth:`VerletGraphBuilder._pairs`): a rebuild, a strained cell, or an input error to report."""
    none = (
        -1,
        np.inf,
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.int64),
        np.empty((0, 3)),
        np.empty(0, dtype=np.int64),
    )
    n_atoms = positions.shape[0]
    if n_atoms != built_positions.shape[0]:
        return none
    for d in range(3):
        if pbc[d] != built_pbc[d]:
            return none
        for e in range(3):
            if cell[d, e] != built_cell[d, e]:
                return none
    for a in range(n_atoms):
        if numbers[a] != built_numbers[a]:
            return none
        dx = positions[a, 0] - built_positions[a, 0]
        dy = positions[a, 1] - built_positions[a, 1]
        dz = positions[a, 2] - built_positions[a, 2]
        if not dx * dx + dy * dy + dz * dz <= half_skin2:  # also catches NaN and inf
            return none
    n_pairs = j.shape[0]
    centers, neighbors = np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs, dtype=np.int64)
    vectors = np.empty((n_pairs, 3))
    offsets = np.empty(n_atoms + 1, dtype=np.int64)
    n, shortest = pairs_within(
        positions,
        pair_start,
        j,
        shift_vectors,
        cutoff2,
        centers,
        neighbors,
        vectors,
        np.empty(0, dtype=np.int64),
        offsets,
    )
    return n, shortest, centers[:n], neighbors[:n], vectors[:n], offsets


@numba.njit(cache=True, nogil=True)
def shortest_edge(vectors) -> float:
    """The shortest of (n_edges, 3) edge vectors, Å (inf without edges)."""
    shortest2 = np.inf
    for e in range(vectors.shape[0]):
        vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
        shortest2 = min(shortest2, vx * vx + vy * vy + vz * vz)
    return np.sqrt(shortest2)
