"""Fused CPU evaluation of ACE site energies and edge gradients, compiled with numba.

The torch closed form (:meth:`ACEModel.site_energies_and_grads_torch`) runs about 150 tensor
operations per call; on a CPU most of their cost is dispatch and memory traffic on small
tensors, while the arithmetic is only about 15k multiply-adds per atom for the products and
a few hundred per edge. Here one compiled loop takes the atoms LANES (8) at a time, each
atom in a lane:

1. over the block's edges: R_n, dR_n/dr (:func:`~mlff.models.kernels.radial_with_derivative`),
   the monomials of r̂ and Y_lm; then ``A_{(z_j,n),lm} = Σ_j R_n Y_lm`` for the 8 atoms at once;
2. per block: the objects (A, 1, and the coupled pairs T that some basis function reads, in
   one buffer whose first rows are A) and ``E_i = ½ Σ_L O_L·(M_L O_L)`` with the folded
   readout M_L; the adjoint ``H = ∂E_i/∂A`` through M_L and the couplings of T. These are flat
   lists of terms, the same for every atom, so each term is one multiply-add over the block's
   atoms and its indices are read once per block;
3. per edge ``h_lm = Σ_n H R_n``, ``g_lm = Σ_n H R'_n``, and then
   ``∂E_i/∂r_e = r̂ Σ g_lm Y_lm + (Σ h_lm ∇P_lm(r̂) − Σ l h_lm Y_lm r̂) / r`` with
   ``P_lm = r^l Y_lm`` the solid harmonics.

Per-edge quantities are stored feature-major, (features, slots × LANES): edge s of the atom
in lane b sits in column s·LANES + b, and slots past an atom's last edge hold an edge beyond
the cutoff, whose R_n and R'_n are zero. So steps 1 and 3 are loops over a block's ~200
columns that LLVM vectorises, and the channel contractions (A = R Yᵀ, h = Hᵀ R, g = Hᵀ R')
are multiply-adds on rows of 8 lanes (:func:`_lane_contract_a`, :func:`_lane_contract_h`),
with no per-atom matrix calls and no copies between an atom's rows and the block's lanes.
The lane updates are written so that LLVM's SLP vectoriser (switched on when the kernel
compiles: :class:`~mlff.models.kernels.slp_vectorized`) makes each one a few vector
instructions over the 8 atoms.
Measured at 512 Si atoms on one thread, each against the kernel before it: BLAS
contractions 1.2x, flat term lists 1.25x, blocks of 8 atoms with 16-bit term indices 1.15x;
at 64 atoms, vectorised term updates 1.25x and edge loops over the block instead of the atom
1.4x; BLAS on strided views instead of numba's copies 1.17x (at 64 and 512 atoms);
coupled values only where a function reads them, in a buffer that starts with A, 1.2x (at 64);
the contractions on lanes instead of one BLAS call per atom and contraction, 1.14x at 64,
1.16x at 512, 1.2x at 64 with neighbour counts from 22 to 30.
Atoms are split into contiguous ranges, one per thread. Everything the loop reads is derived
from the model's own modules (radial constants, the product plan and folded readout of
:class:`~mlff.models.ace_product.InvariantProducts`, e3nn's harmonics via
:func:`~mlff.models.harmonics.monomial_expansion`), so this file owns no convention of its
own; tests compare it with the torch closed form.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from mlff.graph import centre_offsets
from mlff.models.harmonics import monomial_expansion
from mlff.models.kernels import (
    JIT_OPTIONS,
    radial_with_derivative,
    slp_vectorized,
    start_thread_pool,
)
from mlff.stamps import is_current, tensor_stamp

__all__ = ["FusedACE"]


def _indices(values: np.ndarray) -> np.ndarray:
    """Term indices in the narrowest unsigned type that holds them: the term tables are
    streamed once per block of atoms, so their size is memory traffic (uint16 for the default
    models; unsigned also spares numba the negative-index check)."""
    dtype = np.uint16 if values.size == 0 or int(values.max()) < 2**16 else np.uint32
    return np.ascontiguousarray(values, dtype=dtype)


def _interleaved(groups: np.ndarray) -> np.ndarray:
    """An order of terms in which consecutive terms add into different slots where possible
    (by rank within the slot's group, then slot), so the sums form no serial chain."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - np.searchsorted(sorted_groups, sorted_groups)
    return np.lexsort((groups, rank))


def _object_rows(products, n_lm: int) -> tuple[dict[int, np.ndarray], int]:
    """Where an atom's objects sit in its buffer of products (rows, one entry per atom).

    Rows 0 … n_a − 1 hold A (channel·n_lm + lm: every object A_{c,L} and every factor of the
    coupled pairs), row n_a the constant 1, then the coupled values of degree L that some
    basis function reads, by (L, m, object). A pair type's couplings are registered for every
    L the type serves, but most pairs enter a function at one L only (the default Si model
    reads 312 of its 580 coupled values), so the values nobody reads get no row and no
    terms. Which values are read follows from the basis (``products._fa_L``, ``_fb_L``), not
    from θ, so the rows hold for every θ.

    Returns, per pool L, the rows of its objects as a (2L+1, n_L) array (−1: not read) in
    ``products.pool_layout[L]`` order, and the number of rows.
    """
    n_a = products.n_channels * n_lm
    n_rows = n_a + 1
    row_of = {}
    for L in sorted(products.pool_layout):
        rows = np.full((2 * L + 1, products.pool_size[L]), -1, dtype=np.int64)
        pos = 0
        for item in products.pool_layout[L]:
            size = products._item_size(item)
            if item[0] == "A":
                rows[:, pos : pos + size] = (
                    np.arange(size)[None, :] * n_lm + L * L + np.arange(2 * L + 1)[:, None]
                )
            elif item[0] == "1":
                rows[0, pos] = n_a
            pos += size
        if L in products.final_ls:
            read = np.union1d(
                getattr(products, f"_fa_{L}").numpy(), getattr(products, f"_fb_{L}").numpy()
            )
            read = read[read >= products._head_size(L)]  # the coupled values (A and 1 have rows)
            rows[:, read] = n_rows + np.arange(rows.shape[0] * read.size).reshape(
                rows.shape[0], read.size
            )
            n_rows += rows.shape[0] * read.size
        row_of[L] = rows
    return row_of, n_rows


def _product_tables(products, n_lm: int, row_of: dict[int, np.ndarray]):
    """The coupled values of an :class:`InvariantProducts` as flat terms
    ``buf[t_dest] += t_w · buf[t_i1] · buf[t_i2]`` over an atom's rows (:func:`_object_rows`;
    t_i1, t_i2 < n_a are rows of A): one loop without the inner loops of one to seven
    iterations per coupling whose exits the branch predictor misses. Values without a row
    (read by no basis function) get no terms."""
    dest, i1, i2, weight = [], [], [], []
    for t, (l1, l2, ls) in enumerate(products.pair_types):
        w = getattr(products, f"_w_{t}").double().numpy()
        size = sum(2 * L + 1 for L in ls)
        if l1 == 0 or l2 == 0:  # stored as the diagonal of a (2l+1)-square coupling
            full = np.zeros((2 * l1 + 1, 2 * l2 + 1, size))
            for m, value in enumerate(w):
                full[m if l1 else 0, m if l2 else 0, m] = value
        else:
            full = w.reshape(2 * l1 + 1, 2 * l2 + 1, size)
        # Value q of the type's coupled pair: its (L, m) and the nonzeros of its coupling.
        lm_of_q = [(L, m) for L in ls for m in range(2 * L + 1)]
        nonzeros = [list(zip(*np.nonzero(np.abs(full[:, :, q]) > 1e-15))) for q in range(size)]
        first = dict(
            products.pair_offsets[t]
        )  # L → the first object of this type's block in pool L
        c1 = getattr(products, f"_pc1_{t}").tolist()
        c2 = getattr(products, f"_pc2_{t}").tolist()
        for u, (a, b) in enumerate(zip(c1, c2)):
            for q, (L, m) in enumerate(lm_of_q):
                row = row_of[L][m, first[L] + u]
                if row < 0:
                    continue
                for m1, m2 in nonzeros[q]:
                    dest.append(row)
                    i1.append(a * n_lm + l1 * l1 + m1)
                    i2.append(b * n_lm + l2 * l2 + m2)
                    weight.append(float(full[m1, m2, q]))
    dest, i1, i2, weight = (
        np.array(x, dtype=dtype)
        for x, dtype in ((dest, np.int64), (i1, np.int64), (i2, np.int64), (weight, np.float64))
    )
    order = _interleaved(dest)
    return (
        _indices(dest[order]),
        _indices(i1[order]),
        _indices(i2[order]),
        np.ascontiguousarray(weight[order]),
    )


def _folded_tables(products, theta: torch.Tensor, row_of: dict[int, np.ndarray]):
    """The folded readout ``M_L = M_L^T`` of :meth:`InvariantProducts._fold` per pool, as flat
    terms ``grad[out] += vals[species, z] · buf[in]`` over every pool and m: out, in (nnz,)
    rows of an atom's buffer (:func:`_object_rows`), vals (n_species, nnz). M_L is sparse: each
    basis function adds one symmetric pair of entries, far fewer than n_L²."""
    folded = products._fold(theta.detach().double().cpu())
    n_species = theta.shape[0]
    out_idx, in_idx, vals = [], [], []
    for L, rows_L in row_of.items():
        if L not in folded:
            continue
        m_hh, m_ht, m_th, m_tt = (x.numpy() if x is not None else None for x in folded[L])
        m = np.zeros((n_species, rows_L.shape[1], rows_L.shape[1]))
        h = m_hh.shape[1]
        m[:, :h, :h], m[:, :h, h:], m[:, h:, :h] = m_hh, m_ht, m_th
        if m_tt is not None:
            m[:, h:, h:] = m_tt
        rows, cols = np.nonzero((m != 0).any(axis=0))  # the union over centre species
        for component in range(2 * L + 1):  # M_L acts on each of the 2L+1 rows alike
            out_idx.append(rows_L[component, rows])
            in_idx.append(rows_L[component, cols])
            vals.append(m[:, rows, cols])
    out_idx, in_idx = np.concatenate(out_idx), np.concatenate(in_idx)
    if (out_idx < 0).any() or (in_idx < 0).any():
        raise RuntimeError("the folded readout reads an object that no basis function names")
    order = _interleaved(out_idx)
    return (
        _indices(out_idx[order]),
        _indices(in_idx[order]),
        np.ascontiguousarray(np.concatenate(vals, axis=1)[:, order]),
    )


#: Atoms whose products run together: each term and its indices are read once per block.
LANES = 8


# The term updates below read every lane before writing any: numba cannot tell LLVM that the
# rows do not alias, and a load after a store to a row that might be the same one keeps the
# SLP vectoriser from fusing the 8 lanes into vector instructions. Written for LANES = 8.
@numba.njit(inline="always")
def _lanes(row):
    return (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


@numba.njit(inline="always")
def _add_product(out, w, x, y):
    """out[b] += w·x[b]·y[b] for the 8 lanes b."""
    p, q, o = _lanes(x), _lanes(y), _lanes(out)
    out[0] = o[0] + w * p[0] * q[0]
    out[1] = o[1] + w * p[1] * q[1]
    out[2] = o[2] + w * p[2] * q[2]
    out[3] = o[3] + w * p[3] * q[3]
    out[4] = o[4] + w * p[4] * q[4]
    out[5] = o[5] + w * p[5] * q[5]
    out[6] = o[6] + w * p[6] * q[6]
    out[7] = o[7] + w * p[7] * q[7]


@numba.njit(inline="always")
def _add_scaled(out, v, x):
    """out[b] += v·x[b] for the 8 lanes b."""
    p, o = _lanes(x), _lanes(out)
    out[0] = o[0] + v * p[0]
    out[1] = o[1] + v * p[1]
    out[2] = o[2] + v * p[2]
    out[3] = o[3] + v * p[3]
    out[4] = o[4] + v * p[4]
    out[5] = o[5] + v * p[5]
    out[6] = o[6] + v * p[6]
    out[7] = o[7] + v * p[7]


@numba.njit(**JIT_OPTIONS)
def _block_products(
    buf, grad, n_a, lane_species, n_lanes, energies, t_dest, t_i1, t_i2, t_w, ro_out, ro_in, ro_val
):
    """E (lanes,) and H = ∂E/∂A (grad[:n_a]) of up to LANES atoms from their A (buf[:n_a]);
    buf and grad are (n_rows, LANES), rows as in :func:`_object_rows`.

    Every atom runs the same terms, so each term is one multiply-add over the lanes."""
    for b in range(LANES):
        buf[n_a, b] = 1.0
    for k in range(n_a + 1, buf.shape[0]):
        row = buf[k]
        for b in range(LANES):
            row[b] = 0.0
    for z in range(t_dest.shape[0]):
        _add_product(buf[t_dest[z]], t_w[z], buf[t_i1[z]], buf[t_i2[z]])
    grad[:] = 0.0
    first = lane_species[0]
    same = True
    for b in range(1, n_lanes):
        same = same and lane_species[b] == first
    if same:
        values = ro_val[first]
        for z in range(ro_out.shape[0]):
            _add_scaled(grad[ro_out[z]], values[z], buf[ro_in[z]])
    else:
        for z in range(ro_out.shape[0]):
            out, x = grad[ro_out[z]], buf[ro_in[z]]
            for b in range(n_lanes):
                out[b] += ro_val[lane_species[b], z] * x[b]
    e = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # in registers: no store-load chain over k
    for k in range(grad.shape[0]):
        g, x = _lanes(grad[k]), _lanes(buf[k])
        e = (
            e[0] + g[0] * x[0],
            e[1] + g[1] * x[1],
            e[2] + g[2] * x[2],
            e[3] + g[3] * x[3],
            e[4] + g[4] * x[4],
            e[5] + g[5] * x[5],
            e[6] + g[6] * x[6],
            e[7] + g[7] * x[7],
        )
    for b in range(LANES):
        energies[b] = 0.5 * e[b]
    for z in range(t_dest.shape[0]):  # the pull-back of the coupled values into A's rows
        g, i1, i2, w = grad[t_dest[z]], t_i1[z], t_i2[z], t_w[z]
        _add_product(grad[i1], w, g, buf[i2])  # i1 = i2 is fine: each call reads, then writes
        _add_product(grad[i2], w, g, buf[i1])


@numba.njit(**JIT_OPTIONS)
def _block_edge_basis(
    b0,
    n_lanes,
    n_slots,
    vectors,
    neighbors,
    start,
    species,
    n_max,
    n_channels,
    inv_r0,
    scale,
    offset,
    agnesi,
    cutoff,
    env_p,
    exps,
    degree_start,
    ycoef,
    r,
    unit,
    rad,
    drad,
    mono,
    ylm,
    rad_n,
    drad_n,
    ir0,
    sc,
    off,
    neighbour,
    scratch,
    powers,
) -> int:
    """The edge basis of atoms b0 … b0 + n_lanes − 1 in their lanes, ``n_slots`` edges each
    (w = n_slots·LANES columns: edge s of lane b in column s·LANES + b; empty slots and lanes
    hold an edge at twice the cutoff, where R_n and R'_n vanish): r (≥ w,), r̂ (3, ≥ w),
    R_c, R'_c (channels, ≥ w), the monomials of r̂ (n_mono, ≥ w) and Y_lm (n_lm, ≥ w).
    Returns w."""
    n_mono = exps.shape[0]
    l_max = degree_start.shape[0] - 2
    n_species = inv_r0.shape[0]
    w = LANES * n_slots
    for b in range(LANES):
        if b < n_lanes:
            i = b0 + b
            first, count = start[i], start[i + 1] - start[i]
            si = species[i]
        else:
            first, count, si = 0, 0, 0
        for s in range(count):
            p, k = first + s, s * LANES + b
            vx, vy, vz = vectors[p, 0], vectors[p, 1], vectors[p, 2]
            rr = np.sqrt(vx * vx + vy * vy + vz * vz)
            r[k] = rr
            inverse = 1.0 / rr
            unit[0, k] = vx * inverse
            unit[1, k] = vy * inverse
            unit[2, k] = vz * inverse
            if n_species > 1:
                sj = species[neighbors[p]]
                neighbour[k] = sj
                ir0[k], sc[k], off[k] = inv_r0[si, sj], scale[si, sj], offset[si, sj]
        for s in range(count, n_slots):  # empty slots: beyond the cutoff (exactly: in float32 too)
            k = s * LANES + b
            r[k] = 2.0 * cutoff
            unit[0, k], unit[1, k], unit[2, k] = 0.0, 0.0, 1.0
            if n_species > 1:
                neighbour[k] = 0
                ir0[k], sc[k], off[k] = inv_r0[0, 0], scale[0, 0], offset[0, 0]
    if n_species == 1:  # the same radial constants for every edge
        inv_r0_0, scale_0, offset_0 = inv_r0[0, 0], scale[0, 0], offset[0, 0]
        for k in range(w):
            ir0[k], sc[k], off[k] = inv_r0_0, scale_0, offset_0
    # Vectorised over the block's edges from here on (loops long enough to pay for their
    # set-up). R_n (zero beyond the cutoff) goes into the neighbour element's channel block;
    # with one element the blocks are the rows.
    if n_species == 1:
        radial_with_derivative(r, ir0, sc, off, agnesi, cutoff, env_p, w, scratch, rad, drad)
    else:
        radial_with_derivative(r, ir0, sc, off, agnesi, cutoff, env_p, w, scratch, rad_n, drad_n)
        for z in range(n_species):
            for n in range(n_max):
                out, d_out, src, d_src = (
                    rad[z * n_max + n],
                    drad[z * n_max + n],
                    rad_n[n],
                    drad_n[n],
                )
                for k in range(w):
                    mine = neighbour[k] == z
                    out[k] = src[k] if mine else 0.0
                    d_out[k] = d_src[k] if mine else 0.0
    for d in range(3):
        p_first = powers[d, 0]
        for k in range(w):
            p_first[k] = 1.0
        for l in range(1, l_max + 1):
            p_prev, p_cur, u_d = powers[d, l - 1], powers[d, l], unit[d]
            for k in range(w):
                p_cur[k] = p_prev[k] * u_d[k]
    for m in range(n_mono):
        out, px, py, pz = (
            mono[m],
            powers[0, exps[m, 0]],
            powers[1, exps[m, 1]],
            powers[2, exps[m, 2]],
        )
        for k in range(w):
            out[k] = px[k] * py[k] * pz[k]
    for l in range(l_max + 1):
        for lm in range(l * l, (l + 1) * (l + 1)):
            out = ylm[lm]
            for k in range(w):
                out[k] = 0.0
            for m in range(degree_start[l], degree_start[l + 1]):
                cm, mono_m = ycoef[lm, m], mono[m]
                if cm != 0.0:
                    for k in range(w):
                        out[k] += cm * mono_m[k]
    return w


@numba.njit(**JIT_OPTIONS)
def _block_edge_gradients(
    w,
    exps,
    lower,
    degree_start,
    ycoef,
    r,
    unit,
    mono,
    ylm,
    h,
    dh,
    weights,
    along,
    gpoly,
    radial_l,
    gout,
):
    """∂E_i/∂r_e (gout, (3, ≥ w)) for the block's w columns from their edge basis and
    h_lm = Σ_c H_{c,lm} R_c, g_lm = Σ_c H_{c,lm} R'_c (n_lm, ≥ w) with H = ∂E_i/∂A of each
    edge's centre: ∂E_i/∂r_e = r̂ Σ g_lm Y_lm + (Σ h_lm ∇P_lm(r̂) − Σ l h_lm Y_lm r̂) / r."""
    n_lm = ycoef.shape[0]
    n_mono = exps.shape[0]
    l_max = degree_start.shape[0] - 2
    for k in range(w):
        along[k] = 0.0
    for lm in range(n_lm):
        dh_lm, y_lm = dh[lm], ylm[lm]
        for k in range(w):
            along[k] += dh_lm[k] * y_lm[k]
    for k in range(w):
        radial_l[k] = 0.0
    for l in range(1, l_max + 1):
        for lm in range(l * l, (l + 1) * (l + 1)):
            h_lm, y_lm = h[lm], ylm[lm]
            for k in range(w):
                radial_l[k] += l * h_lm[k] * y_lm[k]
    for l in range(1, l_max + 1):
        for m in range(degree_start[l], degree_start[l + 1]):
            w_m = weights[m]
            for k in range(w):
                w_m[k] = 0.0
            for lm in range(l * l, (l + 1) * (l + 1)):
                cm, h_lm = ycoef[lm, m], h[lm]
                if cm != 0.0:
                    for k in range(w):
                        w_m[k] += cm * h_lm[k]
    for d in range(3):  # tangential part Σ_m w_m ∂mono_m/∂u_d, then the edge gradient
        g_d, u_d = gpoly[d], unit[d]
        for k in range(w):
            g_d[k] = 0.0
        for m in range(degree_start[1], n_mono):
            power = exps[m, d]
            if power:
                w_m, low = weights[m], mono[lower[m, d]]
                for k in range(w):
                    g_d[k] += power * w_m[k] * low[k]
        for k in range(w):
            gout[d, k] = u_d[k] * along[k] + (g_d[k] - radial_l[k] * u_d[k]) / r[k]


@numba.njit(**JIT_OPTIONS)
def _ace_atoms(
    first,
    stop,
    vectors,
    neighbors,
    start,
    species,
    n_max,
    n_channels,
    inv_r0,
    scale,
    offset,
    agnesi,
    cutoff,
    env_p,
    exps,
    lower,
    degree_start,
    ycoef,
    n_rows,
    t_dest,
    t_i1,
    t_i2,
    t_w,
    ro_out,
    ro_in,
    ro_val,
    site_constant,
    energies,
    grads,
):
    """Atoms ``first`` ≤ i < ``stop``, LANES at a time: the edge basis of the block's edges
    (:func:`_block_edge_basis`) and the atoms' A = R Yᵀ (:func:`_lane_contract_a`), the
    products of the block (:func:`_block_products`), h = Hᵀ R and g = Hᵀ R' per edge
    (:func:`_lane_contract_h`), then the gradients of the block's edges
    (:func:`_block_edge_gradients`), written back to the atoms' edges.
    """
    n_lm = ycoef.shape[0]
    n_mono = exps.shape[0]
    n_a = n_channels * n_lm
    l_max = degree_start.shape[0] - 2
    slots = 1
    for b0 in range(first, stop, LANES):
        for i in range(b0, min(b0 + LANES, stop)):
            slots = max(slots, start[i + 1] - start[i])
    width = LANES * slots
    dt = vectors.dtype
    # The block's edge basis, kept from the forward pass for the gradients: edge s of lane b
    # in column s·LANES + b.
    r = np.empty(width, dtype=dt)
    unit = np.empty((3, width), dtype=dt)
    rad = np.empty((n_channels, width), dtype=dt)  # R_n in the neighbour's channel block, else 0
    drad = np.empty((n_channels, width), dtype=dt)
    mono = np.empty((n_mono, width), dtype=dt)
    ylm = np.empty((n_lm, width), dtype=dt)
    h = np.empty((n_lm, width), dtype=dt)  # Σ_c H R_c per edge
    dh = np.empty((n_lm, width), dtype=dt)
    # Scratch.
    rad_n = np.empty((n_max, width), dtype=dt)
    drad_n = np.empty((n_max, width), dtype=dt)
    ir0, sc, off = np.empty(width, dtype=dt), np.empty(width, dtype=dt), np.empty(width, dtype=dt)
    neighbour = np.empty(width, dtype=np.int64)
    scratch = np.empty((4, width), dtype=dt)
    powers = np.empty((3, l_max + 1, width), dtype=dt)
    weights = np.empty((n_mono, width), dtype=dt)
    along = np.empty(width, dtype=dt)
    gpoly = np.empty((3, width), dtype=dt)
    radial_l = np.empty(width, dtype=dt)
    gout = np.empty((3, width), dtype=dt)
    # The block's products: A, 1 and the coupled values, and ∂E/∂ of each (rows: _object_rows).
    buf = np.zeros((n_rows, LANES), dtype=dt)
    grad = np.empty((n_rows, LANES), dtype=dt)
    block_energies = np.empty(LANES)
    lane_species = np.zeros(LANES, dtype=np.int64)
    rad3, drad3 = rad.reshape((n_channels, slots, LANES)), drad.reshape((n_channels, slots, LANES))
    ylm3 = ylm.reshape((n_lm, slots, LANES))
    h3, dh3 = h.reshape((n_lm, slots, LANES)), dh.reshape((n_lm, slots, LANES))
    for b0 in range(first, stop, LANES):
        n_lanes = min(LANES, stop - b0)
        n_slots = 0
        for i in range(b0, b0 + n_lanes):
            n_slots = max(n_slots, start[i + 1] - start[i])
        w = _block_edge_basis(
            b0,
            n_lanes,
            n_slots,
            vectors,
            neighbors,
            start,
            species,
            n_max,
            n_channels,
            inv_r0,
            scale,
            offset,
            agnesi,
            cutoff,
            env_p,
            exps,
            degree_start,
            ycoef,
            r,
            unit,
            rad,
            drad,
            mono,
            ylm,
            rad_n,
            drad_n,
            ir0,
            sc,
            off,
            neighbour,
            scratch,
            powers,
        )
        for lane in range(n_lanes):
            lane_species[lane] = species[b0 + lane]
        _lane_contract_a(rad3, ylm3, n_slots, n_lm, buf)
        _block_products(
            buf,
            grad,
            n_a,
            lane_species,
            n_lanes,
            block_energies,
            t_dest,
            t_i1,
            t_i2,
            t_w,
            ro_out,
            ro_in,
            ro_val,
        )
        for lane in range(n_lanes):
            i = b0 + lane
            energies[i] = block_energies[lane] + site_constant[species[i]]
        _lane_contract_h(grad, rad3, drad3, n_slots, n_lm, h3, dh3)
        _block_edge_gradients(
            w,
            exps,
            lower,
            degree_start,
            ycoef,
            r,
            unit,
            mono,
            ylm,
            h,
            dh,
            weights,
            along,
            gpoly,
            radial_l,
            gout,
        )
        for lane in range(n_lanes):
            i = b0 + lane
            for s in range(start[i + 1] - start[i]):
                k = s * LANES + lane
                p = start[i] + s
                grads[p, 0] = gout[0, k]
                grads[p, 1] = gout[1, k]
                grads[p, 2] = gout[2, k]


#: The lane contractions' options: multiply-adds fuse into FMAs, but sums are not
#: reassociated. With reassociation LLVM vectorises the channel sum (with gathers) instead of
#: the 8 lanes: 4x slower.
_LANE_OPTIONS = dict(JIT_OPTIONS, fastmath={"contract"})
_ZERO = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@numba.njit(inline="always")
def _fma(e, x, y):
    """e[b] + x[b]·y[b] for the 8 lanes b, as a tuple: sums carried in registers."""
    return (
        e[0] + x[0] * y[0],
        e[1] + x[1] * y[1],
        e[2] + x[2] * y[2],
        e[3] + x[3] * y[3],
        e[4] + x[4] * y[4],
        e[5] + x[5] * y[5],
        e[6] + x[6] * y[6],
        e[7] + x[7] * y[7],
    )


@numba.njit(inline="always")
def _store(row, e):
    row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] = e


@numba.njit(**_LANE_OPTIONS)
def _lane_contract_a(rad3, y3, n_slots, n_lm, buf):
    """``A_{c,lm} = Σ_s R_c Y_lm`` over the first ``n_slots`` slots of each lane, into buf's
    rows c·n_lm + lm (the A rows of :func:`_object_rows`); rad3 (channels, slots, LANES),
    y3 (n_lm, slots, LANES). Eight lm rows share each load of R_c and run as eight
    independent sums: one sum at a time waits on its own multiply-adds (1.4x slower)."""
    n_channels = rad3.shape[0]
    for c in range(n_channels):
        lm = 0
        while lm + 8 <= n_lm:
            e0 = e1 = e2 = e3 = e4 = e5 = e6 = e7 = _ZERO
            for s in range(n_slots):
                x = _lanes(rad3[c, s])
                e0 = _fma(e0, x, _lanes(y3[lm, s]))
                e1 = _fma(e1, x, _lanes(y3[lm + 1, s]))
                e2 = _fma(e2, x, _lanes(y3[lm + 2, s]))
                e3 = _fma(e3, x, _lanes(y3[lm + 3, s]))
                e4 = _fma(e4, x, _lanes(y3[lm + 4, s]))
                e5 = _fma(e5, x, _lanes(y3[lm + 5, s]))
                e6 = _fma(e6, x, _lanes(y3[lm + 6, s]))
                e7 = _fma(e7, x, _lanes(y3[lm + 7, s]))
            k = c * n_lm + lm
            for row, e in (
                (k, e0),
                (k + 1, e1),
                (k + 2, e2),
                (k + 3, e3),
                (k + 4, e4),
                (k + 5, e5),
                (k + 6, e6),
                (k + 7, e7),
            ):
                _store(buf[row], e)
            lm += 8
        while lm < n_lm:
            e0 = _ZERO
            for s in range(n_slots):
                e0 = _fma(e0, _lanes(rad3[c, s]), _lanes(y3[lm, s]))
            _store(buf[c * n_lm + lm], e0)
            lm += 1


@numba.njit(**_LANE_OPTIONS)
def _lane_contract_h(grad, rad3, drad3, n_slots, n_lm, h3, dh3):
    """``h_lm = Σ_c H_{c,lm} R_c`` and ``g_lm = Σ_c H_{c,lm} R'_c`` in each of the first
    ``n_slots`` slots (h3, dh3 (n_lm, slots, LANES)), H = ∂E/∂A in grad's rows c·n_lm + lm;
    rad3, drad3 (channels, slots, LANES). Four slots at a time share each load of H."""
    n_channels = rad3.shape[0]
    for lm in range(n_lm):
        s = 0
        while s + 4 <= n_slots:
            e0 = e1 = e2 = e3 = f0 = f1 = f2 = f3 = _ZERO
            for c in range(n_channels):
                g = _lanes(grad[c * n_lm + lm])
                e0 = _fma(e0, g, _lanes(rad3[c, s]))
                e1 = _fma(e1, g, _lanes(rad3[c, s + 1]))
                e2 = _fma(e2, g, _lanes(rad3[c, s + 2]))
                e3 = _fma(e3, g, _lanes(rad3[c, s + 3]))
                f0 = _fma(f0, g, _lanes(drad3[c, s]))
                f1 = _fma(f1, g, _lanes(drad3[c, s + 1]))
                f2 = _fma(f2, g, _lanes(drad3[c, s + 2]))
                f3 = _fma(f3, g, _lanes(drad3[c, s + 3]))
            for slot, e, f in ((s, e0, f0), (s + 1, e1, f1), (s + 2, e2, f2), (s + 3, e3, f3)):
                _store(h3[lm, slot], e)
                _store(dh3[lm, slot], f)
            s += 4
        while s < n_slots:
            e0 = f0 = _ZERO
            for c in range(n_channels):
                g = _lanes(grad[c * n_lm + lm])
                e0 = _fma(e0, g, _lanes(rad3[c, s]))
                f0 = _fma(f0, g, _lanes(drad3[c, s]))
            _store(h3[lm, s], e0)
            _store(dh3[lm, s], f0)
            s += 1


@numba.njit(parallel=True, **JIT_OPTIONS)
def _ace_atoms_parallel(n_ranges, vectors, neighbors, start, species, *tables):
    """:func:`_ace_atoms` over ``n_ranges`` contiguous ranges of atoms, one per thread. The
    work stays in the serial function: numba's parallel lowering optimises loops less well."""
    n_atoms = species.shape[0]
    for b in numba.prange(n_ranges):
        _ace_atoms(
            b * n_atoms // n_ranges,
            (b + 1) * n_atoms // n_ranges,
            vectors,
            neighbors,
            start,
            species,
            *tables,
        )


class FusedACE:
    """Compiled CPU evaluator of one :class:`~mlff.models.ace.ACEModel`.

    Built once per model (tables from its radial basis and product plan); the readout
    coefficients are refreshed whenever θ changes. Call with a CPU graph's arrays.
    """

    def __init__(self, model):
        self.radial = model.radial
        self.n_max, self.l_max = int(model.radial.n_max), int(model.l_max)
        self.n_lm = (self.l_max + 1) ** 2
        self.n_channels = model.products.n_channels
        self.exps, self.degree_start, self.ycoef, self.lower = monomial_expansion(self.l_max)
        self.products = model.products
        self.rows, n_rows = _object_rows(model.products, self.n_lm)
        self.pair_tables = (n_rows, *_product_tables(model.products, self.n_lm, self.rows))
        self._packed = (
            None  # (stamps of θ and the constant, dtype, radial constants, tables): see tables()
        )
        self._called: set = set()  # (kernel, dtype) combinations called so far

    def tables(self, theta: torch.Tensor, dtype, constant: torch.Tensor | None = None) -> tuple:
        """Everything the kernel reads for readout θ (n_species, n_basis) in ``dtype``, in its
        argument order; ``constant`` (n_species,) eV adds a fixed energy per centre species
        (added to each site energy at the end, in float64: in the readout's float32 sums it
        would cost float32 runs their last digits). Cached as one object with
        its key (the stamps of θ and the constant, the dtype and the radial constants, which
        follow r0), so a thread never pairs one θ's key with another's tables."""
        constants = self.radial.kernel_constants(dtype)
        cached = self._packed
        if (
            cached is None
            or cached[2] != dtype
            or cached[3] is not constants
            or not is_current(cached[0], theta)
            or (constant is None) != (cached[1] is None)
            or (constant is not None and not is_current(cached[1], constant))
        ):
            n_rows, *terms, weights = self.pair_tables
            ro_out, ro_in, vals = _folded_tables(self.products, theta, self.rows)
            site_constant = (
                np.zeros(theta.shape[0])
                if constant is None
                else np.ascontiguousarray(constant.detach().cpu().double().numpy())
            )
            packed = (
                self.n_max,
                self.n_channels,
                *constants,
                self.exps,
                self.lower,
                self.degree_start,
                np.ascontiguousarray(self.ycoef, dtype=dtype),
                n_rows,
                *terms,
                np.ascontiguousarray(weights, dtype=dtype),
                ro_out,
                ro_in,
                np.ascontiguousarray(vals, dtype=dtype),
                site_constant,
            )
            cached = self._packed = (
                tensor_stamp(theta),
                None if constant is None else tensor_stamp(constant),
                dtype,
                constants,
                packed,
            )
        return cached[4]

    def __call__(
        self,
        vectors: np.ndarray,
        centers: np.ndarray,
        neighbors: np.ndarray,
        species: np.ndarray,
        theta: torch.Tensor,
        n_threads: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """E_i (n_atoms,) float64 and ∂E/∂r_e (n_edges, 3) for one graph (numpy, float32 or
        float64: the gradients' dtype), atoms split over ``n_threads`` threads."""
        vectors = np.ascontiguousarray(vectors)
        return self.run(
            self.tables(theta, vectors.dtype), vectors, centers, neighbors, species, n_threads
        )

    def run(
        self,
        tables: tuple,
        vectors: np.ndarray,
        centers: np.ndarray,
        neighbors: np.ndarray,
        species: np.ndarray,
        n_threads: int = 1,
        offsets: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`__call__`, with the tables of :meth:`tables` (in the dtype of ``vectors``);
        ``offsets`` (n_atoms + 1,) int64, where each centre's edges begin if they are grouped
        by centre (:attr:`~mlff.graph.EdgeArrays.offsets`), spares a pass over the edges."""
        # One array type per dtype (the compiled signature that _called records): no-ops for
        # the calculators' arrays.
        vectors = np.ascontiguousarray(vectors)
        centers = np.ascontiguousarray(centers, dtype=np.int64)
        neighbors = np.ascontiguousarray(neighbors, dtype=np.int64)
        species = np.ascontiguousarray(species, dtype=np.int64)
        dtype = vectors.dtype
        n_atoms, n_edges = species.shape[0], vectors.shape[0]
        start = offsets if offsets is not None else centre_offsets(centers, n_atoms)
        if start is None:  # not grouped by centre (graphs from mlff.graph are)
            if n_edges and not 0 <= centers.min() <= centers.max() < n_atoms:
                raise ValueError(
                    f"edge centres must index the {n_atoms} atoms, got values from "
                    f"{centers.min()} to {centers.max()}"
                )
            order = np.argsort(centers, kind="stable")
            energies, grads = self.run(
                tables, vectors[order], centers[order], neighbors[order], species, n_threads
            )
            grads[order] = grads.copy()
            return energies, grads
        # Site energies in float64 whatever the dtype: summed there, they are rounded once, not
        # to float32's ~5e-7 eV per atom (which was all of a float32 run's measured NVE drift).
        energies = np.empty(n_atoms)
        grads = np.empty(
            (n_edges, 3), dtype=dtype
        )  # every edge has a centre, so every row is written
        n_ranges = max(1, min(int(n_threads), n_atoms))
        if n_ranges == 1:
            kernel, split = _ace_atoms, (0, n_atoms)
        else:
            start_thread_pool()
            kernel, split = _ace_atoms_parallel, (n_ranges,)
        key = (kernel, dtype)
        if key in self._called:
            kernel(*split, vectors, neighbors, start, species, *tables, energies, grads)
        else:  # the first call of this dtype and mode compiles (or loads numba's cache)
            with slp_vectorized():  # SLP takes effect where a signature compiles
                kernel(*split, vectors, neighbors, start, species, *tables, energies, grads)
            self._called.add(key)
        return energies, grads
