"""The ACE model's force and virial design rows on the CPU, compiled with numba: what fitting
needs, without the per-edge Jacobian (n_edges, P, 3).

For a centre i and each nonzero ``∂B_ik/∂A_{i,c,lm}`` (a handful per basis function: ∂B/∂A
of a product touches only its factors' channels and m), the edge derivatives
``J_ik(e) = Σ ∂B_ik/∂A_{c,lm} · ∂φ_{c,lm}(r_e)/∂r_e`` are accumulated over the centre's edges
in a (K, 3, edges) block, the edges the inner, contiguous loop. The block is then scattered by
the protocol's signs (``F_i += J``, ``F_j -= J``, ``W = -Σ_e J ⊗ r_e``), so the rows equal
those that :func:`mlff.protocol.forces_from_edge_grads` and
:func:`mlff.protocol.virial_from_edge_grads` give from the Jacobian; tests compare them.
"""

from __future__ import annotations

import numba
import numpy as np

from mlff.kernels.common import JIT_OPTIONS

__all__ = ["ace_force_virial_rows"]


@numba.njit(**JIT_OPTIONS)
def _rows(
    offsets, neighbors, vectors, species, radial, d_radial, ylm, d_ylm,
    ent_k, ent_c, ent_lm, values, n_basis, n_species, forces, virial,
):  # fmt: skip
    n_atoms = offsets.shape[0] - 1
    width = 1
    for i in range(n_atoms):
        width = max(width, offsets[i + 1] - offsets[i])
    n_max, n_lm = radial.shape[1], ylm.shape[1]
    jac = np.zeros((n_basis, 3, width))
    local = np.zeros((n_species, n_max, n_lm, 3, width))
    for i in range(n_atoms):
        first, count = offsets[i], offsets[i + 1] - offsets[i]
        if count == 0:
            continue
        # ∂φ of this centre's edges, by neighbour species (zero where the species differs)
        local[:] = 0.0
        for s in range(count):  # ∂φ_{n,lm}/∂r = R'_n Y_lm r̂ + R_n ∇Y_lm
            e = first + s
            z = species[neighbors[e]]
            inv_r = 1.0 / np.sqrt(vectors[e, 0] ** 2 + vectors[e, 1] ** 2 + vectors[e, 2] ** 2)
            for n in range(n_max):
                dr, rn = d_radial[e, n], radial[e, n]
                for lm in range(n_lm):
                    y = dr * ylm[e, lm] * inv_r
                    for a in range(3):
                        local[z, n, lm, a, s] = y * vectors[e, a] + rn * d_ylm[e, lm, a]
        jac[:, :, :count] = 0.0
        for t in range(ent_k.shape[0]):
            v = values[t, i]
            if v == 0.0:
                continue
            k, c, lm = ent_k[t], ent_c[t], ent_lm[t]
            z, n = c // n_max, c % n_max
            for a in range(3):
                row, src = jac[k, a], local[z, n, lm, a]
                for s in range(count):
                    row[s] += v * src[s]
        col0 = species[i] * n_basis  # the centre's element block (BlockReadout layout)
        for k in range(n_basis):
            col = col0 + k
            out = forces[col]  # (n_atoms, 3): the writes of one column stay close together
            jx, jy, jz = jac[k, 0], jac[k, 1], jac[k, 2]
            fx = fy = fz = 0.0
            wxx = wxy = wxz = wyx = wyy = wyz = wzx = wzy = wzz = 0.0
            for s in range(count):
                e = first + s
                gx, gy, gz = jx[s], jy[s], jz[s]
                j = neighbors[e]
                out[j, 0] -= gx
                out[j, 1] -= gy
                out[j, 2] -= gz
                fx += gx
                fy += gy
                fz += gz
                rx, ry, rz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
                wxx += gx * rx
                wxy += gx * ry
                wxz += gx * rz
                wyx += gy * rx
                wyy += gy * ry
                wyz += gy * rz
                wzx += gz * rx
                wzy += gz * ry
                wzz += gz * rz
            out[i, 0] += fx
            out[i, 1] += fy
            out[i, 2] += fz
            # W = -Σ_e g ⊗ r in Voigt order [xx, yy, zz, yz, xz, xy], off-diagonals averaged
            virial[0, col] -= wxx
            virial[1, col] -= wyy
            virial[2, col] -= wzz
            virial[3, col] -= 0.5 * (wyz + wzy)
            virial[4, col] -= 0.5 * (wxz + wzx)
            virial[5, col] -= 0.5 * (wxy + wyx)


def ace_force_virial_rows(
    offsets: np.ndarray,
    neighbors: np.ndarray,
    vectors: np.ndarray,
    species: np.ndarray,
    radial: tuple[np.ndarray, np.ndarray],
    harmonics: tuple[np.ndarray, np.ndarray],
    entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_basis: int,
    n_elements: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Force rows (n_atoms, 3, n_elements·K) and virial rows (6, n_elements·K) eV of an ACE
    model, unnormalised, for edges grouped by centre (``offsets`` (n_atoms + 1,)).

    ``radial``: R_n and R'_n (n_edges, n_max); ``harmonics``: Y_lm (n_edges, n_lm) and ∇Y_lm
    (n_edges, n_lm, 3); ``entries``: the nonzeros of ∂B/∂A as (k (Q,), channel (Q,), lm (Q,),
    values (Q, n_atoms)), a channel being z·n_max + n for neighbour element z. Float64."""
    n_atoms = offsets.shape[0] - 1
    forces = np.zeros((n_elements * n_basis, n_atoms, 3))
    virial = np.zeros((6, n_elements * n_basis))
    ent_k, ent_c, ent_lm, values = entries
    _rows(
        offsets, neighbors, vectors, species, radial[0], radial[1], harmonics[0], harmonics[1],
        ent_k, ent_c, ent_lm, values, n_basis, n_elements, forces, virial,
    )  # fmt: skip
    return np.ascontiguousarray(forces.transpose(1, 2, 0)), virial
