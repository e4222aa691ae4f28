"""The pair model's site energies and edge gradients on the CPU, compiled with numba."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from mlff.kernels.common import JIT_OPTIONS, start_thread_pool
from mlff.kernels.radial import RadialTables, radial_with_derivative

__all__ = ["PairTables", "pair_energies_and_grads", "EDGES_PER_THREAD"]

#: Fewest edges per thread: below this a thread's start-up costs more than its share saves
#: (see docs/performance.md).
EDGES_PER_THREAD = 768


class PairTables(NamedTuple):
    """What the pair kernel reads (:meth:`mlff.models.pair.PairModel.kernel_tables`)."""

    radial: RadialTables
    pair_index: np.ndarray  # (n_species, n_species) int64: the unordered pair of two species
    weight: np.ndarray  # (n_pairs, n_max) θ, eV, in the kernel's dtype


@numba.njit(**JIT_OPTIONS)
def _pair_edges(lo, hi, vectors, centers, neighbors, species, tables, energies, grads):
    """``E_i += ½ V(r_e)`` and ``∂E/∂r_e = ½ V'(r_e) r̂_e`` for the edges lo ≤ e < hi, in
    chunks through the radial kernel. Returns the shortest edge length, Å (inf without edges)."""
    chunk = 256
    radial, pair_index, weight = tables.radial, tables.pair_index, tables.weight
    inv_r0, scale, offset = radial.inv_r0, radial.scale, radial.offset
    n_max = weight.shape[1]
    dt = vectors.dtype
    r = np.empty(chunk, dtype=dt)
    ir0, sc, off = np.empty(chunk, dtype=dt), np.empty(chunk, dtype=dt), np.empty(chunk, dtype=dt)
    scratch = np.empty((4, chunk), dtype=dt)
    rad, drad = np.empty((n_max, chunk), dtype=dt), np.empty((n_max, chunk), dtype=dt)
    r_min = np.inf
    for first in range(lo, hi, chunk):
        w = min(chunk, hi - first)
        for k in range(w):
            e = first + k
            vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
            r[k] = np.sqrt(vx * vx + vy * vy + vz * vz)
            r_min = min(r_min, r[k])
            si, sj = species[centers[e]], species[neighbors[e]]
            ir0[k], sc[k], off[k] = inv_r0[si, sj], scale[si, sj], offset[si, sj]
        radial_with_derivative(r, ir0, sc, off, radial, w, scratch, rad, drad)
        for k in range(w):
            e = first + k
            theta = weight[pair_index[species[centers[e]], species[neighbors[e]]]]
            v, dv = 0.0, 0.0
            for n in range(n_max):
                v += theta[n] * rad[n, k]
                dv += theta[n] * drad[n, k]
            energies[centers[e]] += 0.5 * v
            g = 0.5 * dv / r[k]
            grads[e, 0] = g * vectors[e, 0]
            grads[e, 1] = g * vectors[e, 1]
            grads[e, 2] = g * vectors[e, 2]
    return r_min


@numba.njit(parallel=True, **JIT_OPTIONS)
def _pair_edges_prange(
    n_ranges, vectors, centers, neighbors, species, energies, grads,
    inv_r0, scale, offset, agnesi_p, agnesi_q, agnesi_a, cutoff, envelope_p, inner_start, inner_end,
    pair_index, weight,
):  # fmt: skip
    """:func:`_pair_edges` over ``n_ranges`` contiguous ranges of edges, one per thread; each
    range sums its site energies into its own row, so edges need no order. The tables' fields
    come flat: numba's parallel lowering passes arrays and scalars into a ``prange`` body,
    not tuples."""
    n_edges = vectors.shape[0]
    partial = np.zeros((n_ranges, energies.shape[0]), dtype=energies.dtype)
    shortest = np.empty(n_ranges)
    for b in numba.prange(n_ranges):
        radial = RadialTables(
            inv_r0, scale, offset, agnesi_p, agnesi_q, agnesi_a, cutoff, envelope_p,
            inner_start, inner_end,
        )  # fmt: skip
        tables = PairTables(radial, pair_index, weight)
        lo, hi = b * n_edges // n_ranges, (b + 1) * n_edges // n_ranges
        shortest[b] = _pair_edges(
            lo, hi, vectors, centers, neighbors, species, tables, partial[b], grads
        )
    for b in range(n_ranges):
        energies += partial[b]
    return shortest.min()


@numba.njit(**JIT_OPTIONS)
def _pair_edges_parallel(n_ranges, vectors, centers, neighbors, species, tables, energies, grads):
    """:func:`_pair_edges_prange` with the tables' fields taken apart."""
    r = tables.radial
    return _pair_edges_prange(
        n_ranges, vectors, centers, neighbors, species, energies, grads,
        r.inv_r0, r.scale, r.offset, r.agnesi_p, r.agnesi_q, r.agnesi_a, r.cutoff, r.envelope_p,
        r.inner_start, r.inner_end,
        tables.pair_index, tables.weight,
    )  # fmt: skip


def pair_energies_and_grads(
    tables: PairTables,
    vectors: np.ndarray,
    centers: np.ndarray,
    neighbors: np.ndarray,
    species: np.ndarray,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) in the dtype of ``vectors``, and the shortest
    edge (Å), for edges in any order; ``species`` (n_atoms,) int64. Edges are split over up to
    ``n_threads`` threads, each taking at least :data:`EDGES_PER_THREAD`."""
    energies = np.zeros(species.shape[0], dtype=vectors.dtype)
    grads = np.empty_like(vectors)
    n_ranges = min(n_threads, numba.config.NUMBA_NUM_THREADS, len(centers) // EDGES_PER_THREAD)
    if n_ranges > 1:
        start_thread_pool()
        r_min = _pair_edges_parallel(
            n_ranges, vectors, centers, neighbors, species, tables, energies, grads
        )
    else:
        r_min = _pair_edges(
            0, len(centers), vectors, centers, neighbors, species, tables, energies, grads
        )
    return energies, grads, float(r_min)
