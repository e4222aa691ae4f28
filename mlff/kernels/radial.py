"""The radial basis ``R_n(r) = T_n(x(r)) f(r)`` and its derivative, compiled for the
kernels of every model that reads a :class:`~mlff.models.radial.RadialBasis`."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from mlff.kernels.common import JIT_OPTIONS, ipow

__all__ = ["RadialTables", "radial_with_derivative"]


class RadialTables(NamedTuple):
    """The constants of a :class:`~mlff.models.radial.RadialBasis`
    (:meth:`~mlff.models.radial.RadialBasis.kernel_tables`), floats in the kernel's dtype.

    The Agnesi coordinate is ``x = scale·y + offset`` with
    ``y = 1 / (1 + a s^q / (1 + s^(q-p)))``, ``s = r / r0``; the envelope is
    :class:`~mlff.models.radial.PolynomialEnvelope` of power ``envelope_p``, times the inner
    switch :class:`~mlff.models.radial.InnerSwitch` from ``inner_start·r0`` to
    ``inner_end·r0`` (none when ``inner_end`` is 0)."""

    inv_r0: np.ndarray  # (n_species, n_species) 1/Å
    scale: np.ndarray  # (n_species, n_species)
    offset: np.ndarray  # (n_species, n_species)
    agnesi_p: int
    agnesi_q: int
    agnesi_a: float
    cutoff: float  # Å
    envelope_p: int
    inner_start: float  # fraction of r0
    inner_end: float  # fraction of r0; 0: no inner switch


@numba.njit(**JIT_OPTIONS)
def radial_with_derivative(r, ir0, scale, offset, tables, w, scratch, rad, drad):
    """R_n(r_k) and dR_n/dr for the first ``w`` edges: rad, drad (n_max, ≥ w), zero where
    r_k ≥ cutoff. r, ir0, scale, offset: (≥ w,) per edge (the last three from ``tables``'
    (S, S) entries of the edge's species pair); scratch: (≥ 4, ≥ w).

    ``R_n = T_n(x(r)) f(r)``: Chebyshev T_n of the Agnesi coordinate times the envelope, as
    :class:`~mlff.models.radial.RadialBasis`. Edges are the inner index, and each loop writes
    one array: LLVM vectorises a loop only if it can check at run time that the arrays it
    writes overlap none it reads, and gives up beyond a handful of such checks.
    """
    ap, aq, aa = tables.agnesi_p, tables.agnesi_q, tables.agnesi_a
    cutoff, env_p = tables.cutoff, tables.envelope_p
    x, dx, f, df = scratch[0], scratch[1], scratch[2], scratch[3]
    inv_cutoff = 1.0 / cutoff
    c_env = 0.5 * env_p * (env_p + 1) * (env_p + 2)
    for k in range(w):  # y = 1 / (1 + a s^q / (1 + s^(q-p))), s = r/r0; x = scale·y + offset
        s = r[k] * ir0[k]
        y = 1.0 / (1.0 + aa * ipow(s, aq) / (1.0 + ipow(s, aq - ap)))
        x[k] = scale[k] * y + offset[k]
    for k in range(w):  # dx/dr
        s = r[k] * ir0[k]
        s_qp1, s_p = ipow(s, aq - ap - 1), ipow(s, ap)
        s_qp = s_qp1 * s
        s_q = s_qp * s_p
        inv_den = 1.0 / (1.0 + s_qp)
        y = 1.0 / (1.0 + aa * s_q * inv_den)
        dg = aa * (aq * s_qp1 * s_p * (1.0 + s_qp) - (aq - ap) * s_q * s_qp1) * (inv_den * inv_den)
        dx[k] = -scale[k] * dg * y * y * ir0[k]
    for k in range(w):  # the envelope, zero from the cutoff on
        xc = r[k] * inv_cutoff
        inside = 1.0 if xc < 1.0 else 0.0
        f[k] = inside * (
            1.0
            + ipow(xc, env_p)
            * (
                -0.5 * (env_p + 1) * (env_p + 2)
                + xc * (env_p * (env_p + 2) - 0.5 * env_p * (env_p + 1) * xc)
            )
        )
    for k in range(w):
        xc = r[k] * inv_cutoff
        inside = 1.0 if xc < 1.0 else 0.0
        df[k] = inside * (-c_env * inv_cutoff) * ipow(xc, env_p - 1) * (1.0 - xc) * (1.0 - xc)
    inner_start, inner_end = tables.inner_start, tables.inner_end
    if inner_end > 0.0:  # f·s and (f·s)' = f'·s + f·s'·/r0, s the quintic switch of r/r0
        inv_width = 1.0 / (inner_end - inner_start)
        for k in range(w):
            u = min(max((r[k] * ir0[k] - inner_start) * inv_width, 0.0), 1.0)
            switch = u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)
            slope = 30.0 * u * u * (1.0 - u) * (1.0 - u) * inv_width * ir0[k]
            df[k] = df[k] * switch + f[k] * slope
            f[k] = f[k] * switch
    # T_n = 2x T_{n-1} - T_{n-2}; dT_n/dx = n U_{n-1} with U_m = 2x U_{m-1} - U_{m-2}. The rows
    # hold T_n and U_{n-1} until the last loops scale them into R_n and dR_n/dr.
    n_max = rad.shape[0]
    for k in range(w):
        rad[0, k] = 1.0
    for k in range(w):
        drad[0, k] = 0.0
    if n_max > 1:
        for k in range(w):
            rad[1, k] = x[k]
        for k in range(w):
            drad[1, k] = 1.0
    if n_max > 2:
        for k in range(w):
            rad[2, k] = 2.0 * x[k] * x[k] - 1.0
        for k in range(w):
            drad[2, k] = 2.0 * x[k]
    for n in range(3, n_max):
        t_n, t_1, t_2 = rad[n], rad[n - 1], rad[n - 2]
        for k in range(w):
            t_n[k] = 2.0 * x[k] * t_1[k] - t_2[k]
        u_n, u_1, u_2 = drad[n], drad[n - 1], drad[n - 2]
        for k in range(w):
            u_n[k] = 2.0 * x[k] * u_1[k] - u_2[k]
    for n in range(n_max):
        t_n, u_n = rad[n], drad[n]
        for k in range(w):
            u_n[k] = n * u_n[k] * dx[k] * f[k] + t_n[k] * df[k]
        for k in range(w):
            t_n[k] = t_n[k] * f[k]
