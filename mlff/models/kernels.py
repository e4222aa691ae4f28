"""Compiled (numba) CPU kernels shared by the models: the radial basis and the pair model.

They compute what the torch modules in :mod:`mlff.models.radial` and
:mod:`mlff.models.pair` compute, from the constants those modules hand out
(:meth:`~mlff.models.radial.RadialBasis.kernel_constants`), one edge at a time, so a model
call costs a loop over edges instead of dozens of tensor operations. Tests compare every
kernel with its torch counterpart.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["JIT_OPTIONS", "radial_with_derivative", "pair_energies_and_grads"]

#: Options of every kernel: compiled once and cached on disk; ``fastmath`` lets LLVM
#: reassociate sums so short loops vectorise (inputs are finite: graphs refuse NaN positions).
JIT_OPTIONS = dict(cache=True, fastmath=True, nogil=True)


@numba.njit(**JIT_OPTIONS)
def _ipow(x, n):
    out = 1.0
    for _ in range(n):
        out *= x
    return out


@numba.njit(**JIT_OPTIONS)
def radial_with_derivative(r, ir0, scale, offset, agnesi, cutoff, env_p, rad, drad):
    """R_n(r) and dR_n/dr into rad, drad (n_max,) for one edge with r < cutoff.

    ``R_n = T_n(x(r)) f(r)``: Chebyshev T_n of the Agnesi coordinate times the envelope, as
    :class:`~mlff.models.radial.RadialBasis`.
    """
    ap, aq, aa = int(agnesi[0]), int(agnesi[1]), agnesi[2]
    s = r * ir0
    s_qp1 = _ipow(s, aq - ap - 1) if aq - ap > 1 else 1.0
    s_qp = s_qp1 * s
    s_q = s_qp * _ipow(s, ap)
    den = 1.0 + s_qp
    y = 1.0 / (1.0 + aa * s_q / den)
    dg = aa * (aq * (s_q / s) * den - (aq - ap) * s_q * s_qp1) / (den * den)
    x = scale * y + offset
    dx = -scale * dg * y * y * ir0
    xc = r / cutoff
    xp1 = _ipow(xc, env_p - 1)
    xp = xp1 * xc
    f = 1.0 + xp * (-0.5 * (env_p + 1) * (env_p + 2) + xc * (env_p * (env_p + 2) - 0.5 * env_p * (env_p + 1) * xc))
    df = (-0.5 * env_p * (env_p + 1) * (env_p + 2) / cutoff) * xp1 * (1.0 - xc) * (1.0 - xc)
    t_prev, t_cur, u_prev, u_cur = 1.0, x, 0.0, 1.0  # T_0, T_1, U_{-1}, U_0
    for n in range(rad.shape[0]):
        if n == 0:
            t_n, dt_n = 1.0, 0.0
        elif n == 1:
            t_n, dt_n = x, 1.0
        else:  # T_n = 2x T_{n-1} - T_{n-2}; dT_n/dx = n U_{n-1}
            t_next = 2.0 * x * t_cur - t_prev
            u_next = 2.0 * x * u_cur - u_prev
            t_prev, t_cur, u_prev, u_cur = t_cur, t_next, u_cur, u_next
            t_n, dt_n = t_next, n * u_next
        rad[n] = t_n * f
        drad[n] = dt_n * dx * f + t_n * df


@numba.njit(**JIT_OPTIONS)
def pair_energies_and_grads(vectors, centers, neighbors, species, pair_index, weight, inv_r0, scale, offset,
                            agnesi, cutoff, env_p, energies, grads):
    """``E_i += ½ V(r_e)`` and ``∂E/∂r_e = ½ V'(r_e) r̂_e`` for every edge, with
    ``V = Σ_n θ[pair, n] R_n``: energies (n_atoms,) must start at zero, grads is (n_edges, 3).
    Returns the shortest edge length, Å (inf without edges)."""
    n_max = weight.shape[1]
    r_min = np.inf
    rad = np.empty(n_max, dtype=vectors.dtype)
    drad = np.empty(n_max, dtype=vectors.dtype)
    for e in range(vectors.shape[0]):
        vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
        r = np.sqrt(vx * vx + vy * vy + vz * vz)
        r_min = min(r_min, r)
        if r >= cutoff:
            grads[e, 0] = 0.0
            grads[e, 1] = 0.0
            grads[e, 2] = 0.0
            continue
        si, sj = species[centers[e]], species[neighbors[e]]
        radial_with_derivative(r, inv_r0[si, sj], scale[si, sj], offset[si, sj], agnesi, cutoff, env_p, rad, drad)
        theta = weight[pair_index[si, sj]]
        v, dv = 0.0, 0.0
        for n in range(n_max):
            v += theta[n] * rad[n]
            dv += theta[n] * drad[n]
        energies[centers[e]] += 0.5 * v
        g = 0.5 * dv / r
        grads[e, 0] = g * vx
        grads[e, 1] = g * vy
        grads[e, 2] = g * vz
    return r_min
