"""Compiled (numba) CPU kernels shared by the models: the radial basis and the pair model.

They compute what the torch modules in :mod:`mlff.models.radial` and
:mod:`mlff.models.pair` compute, from the constants those modules hand out
(:meth:`~mlff.models.radial.RadialBasis.kernel_constants`), one edge at a time, so a model
call costs a loop over edges instead of dozens of tensor operations. Tests compare every
kernel with its torch counterpart.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

__all__ = [
    "JIT_OPTIONS",
    "MAX_KERNEL_POWER",
    "radial_with_derivative",
    "pair_energies_and_grads",
    "pair_energies_and_grads_parallel",
    "slp_vectorized",
    "start_thread_pool",
]

#: Options of every kernel: compiled once and cached on disk; ``fastmath`` lets LLVM
#: reassociate sums so short loops vectorise (inputs are finite: graphs refuse NaN positions);
#: numpy's error model, because Python's puts a zero check and a raise before every division,
#: which keeps LLVM from vectorising any loop that divides (edges have r > 0: graphs refuse
#: overlapping atoms).
JIT_OPTIONS = dict(cache=True, fastmath=True, nogil=True, error_model="numpy")


class slp_vectorized:
    """Context in which numba compiles with LLVM's SLP (straight-line) vectoriser on.

    numba turns it off by default (``NUMBA_SLP_VECTORIZE=0``); the ACE kernel's 8-atom
    term updates are straight-line code that only it turns into vector instructions (1.7x
    on the products, measured). Numba reads the flag whenever it optimises a new function, so
    entering this around a kernel's call compiles that kernel (and what it calls) with it.
    While any thread is inside, the flag is on for the whole process (a function another
    thread compiles then gets SLP too, which only changes its speed); the last one out
    restores numba's setting. Costs two lock round-trips per call.
    """

    _lock = threading.Lock()
    _depth = 0
    _saved = 0

    def __enter__(self):
        with slp_vectorized._lock:
            if slp_vectorized._depth == 0:
                slp_vectorized._saved = numba.config.SLP_VECTORIZE
                numba.config.SLP_VECTORIZE = 1
            slp_vectorized._depth += 1

    def __exit__(self, *exc):
        with slp_vectorized._lock:
            slp_vectorized._depth -= 1
            if slp_vectorized._depth == 0:
                numba.config.SLP_VECTORIZE = slp_vectorized._saved


#: Integer powers in the kernels take exponents below 2**_POWER_BITS.
_POWER_BITS = 6
#: The largest exponent of the radial transform and envelope the kernels compute exactly.
MAX_KERNEL_POWER = 2**_POWER_BITS - 1


_pool_lock = threading.Lock()
_pool_started = False


def start_thread_pool() -> None:
    """Start numba's thread pool once, without changing torch's thread count: numba's OpenMP
    layer sets the process's OpenMP thread count when its pool starts, and torch reads that as
    its own (a user's ``torch.set_num_threads(1)`` would silently become the pool's size, the
    number of cores by default).

    The parallel kernels split their work into one range per torch thread and run the ranges
    in a ``prange`` on this pool: numba's own thread count (all cores unless set lower) bounds
    how many run at once, and nothing is set per call (setting and restoring it cost ~4 µs
    of a 64-atom MD step)."""
    global _pool_started
    if not _pool_started:
        with _pool_lock:
            if not _pool_started:
                import torch

                torch_threads = torch.get_num_threads()
                numba.get_num_threads()  # starts the pool
                torch.set_num_threads(torch_threads)
                _pool_started = True


@numba.njit(inline="always")
def _ipow(x, n):
    """x**n for 0 <= n < 2**_POWER_BITS (1 for n <= 0) by binary powering with a fixed trip
    count and no branches, so a loop over edges that calls it still vectorises."""
    n = max(n, 0)
    out, power = 1.0, x
    for bit in range(_POWER_BITS):
        out *= power if (n >> bit) & 1 else 1.0
        power *= power
    return out


@numba.njit(**JIT_OPTIONS)
def radial_with_derivative(r, ir0, scale, offset, agnesi, cutoff, env_p, w, scratch, rad, drad):
    """R_n(r_k) and dR_n/dr for the first ``w`` edges: rad, drad (n_max, ≥ w), zero where
    r_k ≥ cutoff. r, ir0, scale, offset: (≥ w,) per edge; scratch: (≥ 4, ≥ w).

    ``R_n = T_n(x(r)) f(r)``: Chebyshev T_n of the Agnesi coordinate times the envelope, as
    :class:`~mlff.models.radial.RadialBasis`. Edges are the inner index, and each loop writes
    one array: LLVM vectorises a loop only if it can check at run time that the arrays it
    writes overlap none it reads, and gives up beyond a handful of such checks.
    """
    ap, aq, aa = int(agnesi[0]), int(agnesi[1]), agnesi[2]
    x, dx, f, df = scratch[0], scratch[1], scratch[2], scratch[3]
    inv_cutoff = 1.0 / cutoff
    c_env = 0.5 * env_p * (env_p + 1) * (env_p + 2)
    for k in range(w):  # y = 1 / (1 + a s^q / (1 + s^(q-p))), s = r/r0; x = scale·y + offset
        s = r[k] * ir0[k]
        y = 1.0 / (1.0 + aa * _ipow(s, aq) / (1.0 + _ipow(s, aq - ap)))
        x[k] = scale[k] * y + offset[k]
    for k in range(w):  # dx/dr
        s = r[k] * ir0[k]
        s_qp1, s_p = _ipow(s, aq - ap - 1), _ipow(s, ap)
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
            + _ipow(xc, env_p)
            * (
                -0.5 * (env_p + 1) * (env_p + 2)
                + xc * (env_p * (env_p + 2) - 0.5 * env_p * (env_p + 1) * xc)
            )
        )
    for k in range(w):
        xc = r[k] * inv_cutoff
        inside = 1.0 if xc < 1.0 else 0.0
        df[k] = inside * (-c_env * inv_cutoff) * _ipow(xc, env_p - 1) * (1.0 - xc) * (1.0 - xc)
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


@numba.njit(**JIT_OPTIONS)
def _pair_edges(
    lo,
    hi,
    vectors,
    centers,
    neighbors,
    species,
    pair_index,
    weight,
    inv_r0,
    scale,
    offset,
    agnesi,
    cutoff,
    env_p,
    energies,
    grads,
):
    """:func:`pair_energies_and_grads` for the edges lo ≤ e < hi."""
    chunk = 256
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
        radial_with_derivative(r, ir0, sc, off, agnesi, cutoff, env_p, w, scratch, rad, drad)
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


@numba.njit(**JIT_OPTIONS)
def pair_energies_and_grads(
    vectors,
    centers,
    neighbors,
    species,
    pair_index,
    weight,
    inv_r0,
    scale,
    offset,
    agnesi,
    cutoff,
    env_p,
    energies,
    grads,
):
    """``E_i += ½ V(r_e)`` and ``∂E/∂r_e = ½ V'(r_e) r̂_e`` for every edge, with
    ``V = Σ_n θ[pair, n] R_n``: energies (n_atoms,) must start at zero, grads is (n_edges, 3).
    Edges go through the radial kernel in chunks. Returns the shortest edge length, Å (inf
    without edges)."""
    return _pair_edges(
        0,
        vectors.shape[0],
        vectors,
        centers,
        neighbors,
        species,
        pair_index,
        weight,
        inv_r0,
        scale,
        offset,
        agnesi,
        cutoff,
        env_p,
        energies,
        grads,
    )


@numba.njit(parallel=True, **JIT_OPTIONS)
def pair_energies_and_grads_parallel(
    n_ranges,
    vectors,
    centers,
    neighbors,
    species,
    pair_index,
    weight,
    inv_r0,
    scale,
    offset,
    agnesi,
    cutoff,
    env_p,
    energies,
    grads,
):
    """:func:`pair_energies_and_grads` over ``n_ranges`` contiguous ranges of edges, one per
    thread; each range sums its site energies into its own row, so edges need no order."""
    n_edges = vectors.shape[0]
    partial = np.zeros((n_ranges, energies.shape[0]), dtype=energies.dtype)
    shortest = np.empty(n_ranges)
    for b in numba.prange(n_ranges):
        shortest[b] = _pair_edges(
            b * n_edges // n_ranges,
            (b + 1) * n_edges // n_ranges,
            vectors,
            centers,
            neighbors,
            species,
            pair_index,
            weight,
            inv_r0,
            scale,
            offset,
            agnesi,
            cutoff,
            env_p,
            partial[b],
            grads,
        )
    for b in range(n_ranges):
        energies += partial[b]
    return shortest.min()
