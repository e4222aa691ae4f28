"""The CPU form of the protocol's sign convention (:mod:`mlff.protocol` owns it): edge
gradients to forces and the virial in one compiled pass."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["scatter_forces", "scatter_forces_and_stress"]


@numba.njit(cache=True, nogil=True)
def scatter_forces(centers, neighbors, edge_grads, vectors, forces, virial):
    """forces (n_atoms, 3) from ``g = ∂E/∂r`` (n_edges, 3): ``F_i += g_e``, ``F_j -= g_e``;
    unless ``virial`` is None, also ``virial = -Σ_e g_e ⊗ r_e`` (3, 3), summed in float64.

    The sums that every edge adds to (the virial, and the centre's force while its edges run,
    as they do in graphs grouped by centre) are kept in registers: through memory, each edge
    would wait on the previous one's stores. Any edge order is correct."""
    forces[:] = 0.0
    w00 = w01 = w02 = w10 = w11 = w12 = w20 = w21 = w22 = 0.0
    n_edges = edge_grads.shape[0]
    current = centers[0] if n_edges else 0
    fx = fy = fz = 0.0
    for e in range(n_edges):
        i, j = centers[e], neighbors[e]
        if i != current:
            forces[current, 0] += fx
            forces[current, 1] += fy
            forces[current, 2] += fz
            current, fx, fy, fz = i, 0.0, 0.0, 0.0
        gx, gy, gz = edge_grads[e, 0], edge_grads[e, 1], edge_grads[e, 2]
        fx += gx
        fy += gy
        fz += gz
        forces[j, 0] -= gx
        forces[j, 1] -= gy
        forces[j, 2] -= gz
        if virial is not None:
            vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
            w00 += gx * vx
            w01 += gx * vy
            w02 += gx * vz
            w10 += gy * vx
            w11 += gy * vy
            w12 += gy * vz
            w20 += gz * vx
            w21 += gz * vy
            w22 += gz * vz
    if n_edges:
        forces[current, 0] += fx
        forces[current, 1] += fy
        forces[current, 2] += fz
    if virial is not None:
        virial[0, 0], virial[0, 1], virial[0, 2] = -w00, -w01, -w02
        virial[1, 0], virial[1, 1], virial[1, 2] = -w10, -w11, -w12
        virial[2, 0], virial[2, 1], virial[2, 2] = -w20, -w21, -w22


@numba.njit(cache=True, nogil=True)
def scatter_forces_and_stress(
    centers, neighbors, edge_grads, vectors, voigt, volume, forces, stress
):
    """:func:`scatter_forces`, then the stress (6,) ``σ_k = -½ (W_ab + W_ba) / volume`` for the
    flattened 3x3 positions ``voigt[k] = 3a + b`` of the Voigt components (the protocol's
    order)."""
    virial = np.empty((3, 3))
    scatter_forces(centers, neighbors, edge_grads, vectors, forces, virial)
    for k in range(6):
        a, b = voigt[k] // 3, voigt[k] % 3
        stress[k] = -0.5 * (virial[a, b] + virial[b, a]) / volume
