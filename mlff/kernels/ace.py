"""The ACE model's site energies and edge gradients on the CPU, compiled with numba.

Arithmetic per atom is small (about 15k multiply-adds for the products, a few hundred per
edge), so the kernel is arranged around memory and vector width rather than operation count.
Atoms run LANES (8) at a time, one per lane:

1. over the block's edges: R_n, dR_n/dr (:func:`~mlff.kernels.radial.radial_with_derivative`),
   the monomials of r̂ and Y_lm; then ``A_{(z_j,n),lm} = Σ_j R_n Y_lm`` for the 8 atoms at once;
2. per block: the objects (A, 1, and the coupled pairs T that some basis function reads, in
   one buffer whose first rows are A) and ``E_i = ½ Σ_L O_L·(M_L O_L)`` with the folded
   readout M_L; the adjoint ``H = ∂E_i/∂A`` through M_L and the couplings of T. These are flat
   lists of terms (:class:`ProductTables`, :class:`ReadoutTables`), the same for every atom,
   so each term is one multiply-add over the block's atoms and its indices are read once per
   block;
3. per edge ``h_lm = Σ_n H R_n``, ``g_lm = Σ_n H R'_n``, and then
   ``∂E_i/∂r_e = r̂ Σ g_lm Y_lm + (Σ h_lm ∇P_lm(r̂) − Σ l h_lm Y_lm r̂) / r`` with
   ``P_lm = r^l Y_lm`` the solid harmonics.

Per-edge quantities are stored feature-major, (features, slots × LANES): edge s of the atom
in lane b sits in column s·LANES + b, and slots past an atom's last edge hold an edge beyond
the cutoff, whose R_n and R'_n are zero. So steps 1 and 3 are loops over a block's columns
that LLVM vectorises, and the channel contractions (A = R Yᵀ, h = Hᵀ R, g = Hᵀ R') are
multiply-adds on rows of 8 lanes (:func:`_lane_contract_a`, :func:`_lane_contract_h`). The
lane updates are written so that LLVM's SLP vectoriser (switched on when the kernel compiles:
:class:`~mlff.kernels.common.slp_vectorized`) makes each one a few vector instructions.

Every table is built by the model (:meth:`mlff.models.ace.ACEModel.kernel_tables`) from its
radial basis, its product plan and e3nn's harmonics, so this file owns no convention of its
own; tests compare it with the torch closed form.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from mlff.kernels.common import JIT_OPTIONS, slp_vectorized, start_thread_pool
from mlff.kernels.radial import RadialTables, radial_with_derivative

__all__ = [
    "LANES",
    "ACETables",
    "HarmonicTables",
    "ProductTables",
    "ReadoutTables",
    "ace_energies_and_grads",
]


class HarmonicTables(NamedTuple):
    """Real spherical harmonics as polynomials in the unit vector's components
    (:func:`mlff.models.harmonics.monomial_expansion`)."""

    exps: np.ndarray  # (n_mono, 3) int64: the exponents of x, y, z in each monomial
    lower: np.ndarray  # (n_mono, 3) int64: the monomial with one power of x, y or z less
    degree_start: np.ndarray  # (l_max + 2,) int64: where the monomials of degree l begin
    ycoef: np.ndarray  # (n_lm, n_mono): Y_lm = Σ_m ycoef[lm, m] · monomial_m


class ProductTables(NamedTuple):
    """The coupled values of an atom's product buffer as flat terms
    ``buf[dest] += weight · buf[left] · buf[right]``.

    An atom's buffer has ``n_rows`` rows: rows ``c·n_lm + lm`` hold A (channel c), the next
    row the constant 1, then the coupled values that some basis function reads. Indices are
    unsigned and as narrow as they fit: the lists are streamed once per block of atoms."""

    n_rows: int
    dest: np.ndarray  # (n_terms,) uint16 or uint32
    left: np.ndarray  # (n_terms,) rows of A
    right: np.ndarray  # (n_terms,) rows of A
    weight: np.ndarray  # (n_terms,) Clebsch–Gordan coefficients, in the kernel's dtype


class ReadoutTables(NamedTuple):
    """The folded readout ``M_L`` of every degree as flat terms
    ``grad[out] += values[species, t] · buf[inp]`` over an atom's buffer rows."""

    out: np.ndarray  # (nnz,) uint16 or uint32
    inp: np.ndarray  # (nnz,) uint16 or uint32
    values: np.ndarray  # (n_species, nnz), in the kernel's dtype
    site_constant: np.ndarray  # (n_species,) float64 eV added to each site energy


class ACETables(NamedTuple):
    """Everything the ACE kernel reads, for one readout θ and one dtype."""

    radial: RadialTables
    n_max: int
    n_channels: int  # n_elements · n_max
    harmonics: HarmonicTables
    products: ProductTables
    readout: ReadoutTables


class Workspace(NamedTuple):
    """One thread's buffers for a block of atoms (columns: slots × LANES)."""

    r: np.ndarray  # (w,) edge lengths, Å
    unit: np.ndarray  # (3, w) r̂
    rad: np.ndarray  # (n_channels, w) R_n in the neighbour's channel block, else 0
    drad: np.ndarray  # (n_channels, w) R'_n likewise
    mono: np.ndarray  # (n_mono, w) monomials of r̂
    ylm: np.ndarray  # (n_lm, w)
    h: np.ndarray  # (n_lm, w) Σ_c H R_c
    dh: np.ndarray  # (n_lm, w) Σ_c H R'_c
    rad_n: np.ndarray  # (n_max, w) scratch: R_n before the channel split
    drad_n: np.ndarray
    ir0: np.ndarray  # (w,) per-edge radial constants
    sc: np.ndarray
    off: np.ndarray
    neighbor: np.ndarray  # (w,) int64 species of the neighbour
    scratch: np.ndarray  # (4, w)
    powers: np.ndarray  # (3, l_max + 1, w) powers of r̂'s components
    weights: np.ndarray  # (n_mono, w)
    along: np.ndarray  # (w,)
    gpoly: np.ndarray  # (3, w)
    radial_l: np.ndarray  # (w,)
    gout: np.ndarray  # (3, w) ∂E/∂r of the block's edges
    buf: np.ndarray  # (n_rows, LANES) the products of the block's atoms
    grad: np.ndarray  # (n_rows, LANES) ∂E/∂ of each


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
def _block_products(buf, grad, n_a, lane_species, n_lanes, energies, products, readout):
    """E (lanes,) and H = ∂E/∂A (grad[:n_a]) of up to LANES atoms from their A (buf[:n_a]);
    buf and grad are (n_rows, LANES), rows as in :class:`ProductTables`.

    Every atom runs the same terms, so each term is one multiply-add over the lanes."""
    t_dest, t_i1, t_i2, t_w = products.dest, products.left, products.right, products.weight
    ro_out, ro_in, ro_val = readout.out, readout.inp, readout.values
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
    e = _ZERO  # in registers: no store-load chain over k
    for k in range(grad.shape[0]):
        e = _fma(e, _lanes(grad[k]), _lanes(buf[k]))
    for b in range(LANES):
        energies[b] = 0.5 * e[b]
    for z in range(t_dest.shape[0]):  # the pull-back of the coupled values into A's rows
        g, i1, i2, w = grad[t_dest[z]], t_i1[z], t_i2[z], t_w[z]
        _add_product(grad[i1], w, g, buf[i2])  # i1 = i2 is fine: each call reads, then writes
        _add_product(grad[i2], w, g, buf[i1])


@numba.njit(**JIT_OPTIONS)
def _block_edge_basis(b0, n_lanes, n_slots, vectors, neighbors, start, species, tables, ws) -> int:
    """The edge basis of atoms b0 … b0 + n_lanes − 1 in their lanes, ``n_slots`` edges each
    (w = n_slots·LANES columns: edge s of lane b in column s·LANES + b; empty slots and lanes
    hold an edge at twice the cutoff, where R_n and R'_n vanish): r (≥ w,), r̂ (3, ≥ w),
    R_c, R'_c (channels, ≥ w), the monomials of r̂ (n_mono, ≥ w) and Y_lm (n_lm, ≥ w).
    Returns w."""
    radial, harmonics, n_max = tables.radial, tables.harmonics, tables.n_max
    inv_r0, scale, offset, cutoff = radial.inv_r0, radial.scale, radial.offset, radial.cutoff
    exps, degree_start, ycoef = harmonics.exps, harmonics.degree_start, harmonics.ycoef
    r, unit, rad, drad, mono, ylm = ws.r, ws.unit, ws.rad, ws.drad, ws.mono, ws.ylm
    rad_n, drad_n, ir0, sc, off = ws.rad_n, ws.drad_n, ws.ir0, ws.sc, ws.off
    neighbor, scratch, powers = ws.neighbor, ws.scratch, ws.powers
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
                neighbor[k] = sj
                ir0[k], sc[k], off[k] = inv_r0[si, sj], scale[si, sj], offset[si, sj]
        for s in range(count, n_slots):  # empty slots: beyond the cutoff (exactly: in float32 too)
            k = s * LANES + b
            r[k] = 2.0 * cutoff
            unit[0, k], unit[1, k], unit[2, k] = 0.0, 0.0, 1.0
            if n_species > 1:
                neighbor[k] = 0
                ir0[k], sc[k], off[k] = inv_r0[0, 0], scale[0, 0], offset[0, 0]
    if n_species == 1:  # the same radial constants for every edge
        inv_r0_0, scale_0, offset_0 = inv_r0[0, 0], scale[0, 0], offset[0, 0]
        for k in range(w):
            ir0[k], sc[k], off[k] = inv_r0_0, scale_0, offset_0
    # Vectorised over the block's edges from here on (loops long enough to pay for their
    # set-up). R_n (zero beyond the cutoff) goes into the neighbour element's channel block;
    # with one element the blocks are the rows.
    if n_species == 1:
        radial_with_derivative(r, ir0, sc, off, radial, w, scratch, rad, drad)
    else:
        radial_with_derivative(r, ir0, sc, off, radial, w, scratch, rad_n, drad_n)
        for z in range(n_species):
            for n in range(n_max):
                out, d_out, src, d_src = (
                    rad[z * n_max + n],
                    drad[z * n_max + n],
                    rad_n[n],
                    drad_n[n],
                )
                for k in range(w):
                    mine = neighbor[k] == z
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
def _block_edge_gradients(w, harmonics, ws):
    """∂E_i/∂r_e (gout, (3, ≥ w)) for the block's w columns from their edge basis and
    h_lm = Σ_c H_{c,lm} R_c, g_lm = Σ_c H_{c,lm} R'_c (n_lm, ≥ w) with H = ∂E_i/∂A of each
    edge's centre: ∂E_i/∂r_e = r̂ Σ g_lm Y_lm + (Σ h_lm ∇P_lm(r̂) − Σ l h_lm Y_lm r̂) / r."""
    exps, lower = harmonics.exps, harmonics.lower
    degree_start, ycoef = harmonics.degree_start, harmonics.ycoef
    r, unit, mono, ylm, h, dh = ws.r, ws.unit, ws.mono, ws.ylm, ws.h, ws.dh
    weights, along, gpoly, radial_l, gout = ws.weights, ws.along, ws.gpoly, ws.radial_l, ws.gout
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
def _workspace(slots, tables, dtype):
    """The buffers of one thread for blocks of up to ``slots`` edges per atom."""
    n_lm = tables.harmonics.ycoef.shape[0]
    n_mono = tables.harmonics.exps.shape[0]
    l_max = tables.harmonics.degree_start.shape[0] - 2
    n_channels, n_max = tables.n_channels, tables.n_max
    width = LANES * slots
    return Workspace(
        np.empty(width, dtype=dtype),
        np.empty((3, width), dtype=dtype),
        np.empty((n_channels, width), dtype=dtype),
        np.empty((n_channels, width), dtype=dtype),
        np.empty((n_mono, width), dtype=dtype),
        np.empty((n_lm, width), dtype=dtype),
        np.empty((n_lm, width), dtype=dtype),
        np.empty((n_lm, width), dtype=dtype),
        np.empty((n_max, width), dtype=dtype),
        np.empty((n_max, width), dtype=dtype),
        np.empty(width, dtype=dtype),
        np.empty(width, dtype=dtype),
        np.empty(width, dtype=dtype),
        np.empty(width, dtype=np.int64),
        np.empty((4, width), dtype=dtype),
        np.empty((3, l_max + 1, width), dtype=dtype),
        np.empty((n_mono, width), dtype=dtype),
        np.empty(width, dtype=dtype),
        np.empty((3, width), dtype=dtype),
        np.empty(width, dtype=dtype),
        np.empty((3, width), dtype=dtype),
        np.zeros((tables.products.n_rows, LANES), dtype=dtype),
        np.empty((tables.products.n_rows, LANES), dtype=dtype),
    )


@numba.njit(**JIT_OPTIONS)
def _ace_atoms(first, stop, vectors, neighbors, start, species, tables, energies, grads):
    """Atoms ``first`` ≤ i < ``stop``, LANES at a time: the edge basis of the block's edges
    (:func:`_block_edge_basis`) and the atoms' A = R Yᵀ (:func:`_lane_contract_a`), the
    products of the block (:func:`_block_products`), h = Hᵀ R and g = Hᵀ R' per edge
    (:func:`_lane_contract_h`), then the gradients of the block's edges
    (:func:`_block_edge_gradients`), written back to the atoms' edges.
    """
    n_lm = tables.harmonics.ycoef.shape[0]
    n_channels = tables.n_channels
    n_a = n_channels * n_lm
    site_constant = tables.readout.site_constant
    slots = 1
    for b0 in range(first, stop, LANES):
        for i in range(b0, min(b0 + LANES, stop)):
            slots = max(slots, start[i + 1] - start[i])
    ws = _workspace(slots, tables, vectors.dtype)
    buf, grad = ws.buf, ws.grad
    block_energies = np.empty(LANES)
    lane_species = np.zeros(LANES, dtype=np.int64)
    # Edge s of lane b sits in column s·LANES + b: these views give (feature, slot, lane).
    rad3 = ws.rad.reshape((n_channels, slots, LANES))
    drad3 = ws.drad.reshape((n_channels, slots, LANES))
    ylm3 = ws.ylm.reshape((n_lm, slots, LANES))
    h3, dh3 = ws.h.reshape((n_lm, slots, LANES)), ws.dh.reshape((n_lm, slots, LANES))
    for b0 in range(first, stop, LANES):
        n_lanes = min(LANES, stop - b0)
        n_slots = 0
        for i in range(b0, b0 + n_lanes):
            n_slots = max(n_slots, start[i + 1] - start[i])
        w = _block_edge_basis(b0, n_lanes, n_slots, vectors, neighbors, start, species, tables, ws)
        for lane in range(n_lanes):
            lane_species[lane] = species[b0 + lane]
        _lane_contract_a(rad3, ylm3, n_slots, n_lm, buf)
        _block_products(
            buf, grad, n_a, lane_species, n_lanes, block_energies, tables.products, tables.readout
        )
        for lane in range(n_lanes):
            i = b0 + lane
            energies[i] = block_energies[lane] + site_constant[species[i]]
        _lane_contract_h(grad, rad3, drad3, n_slots, n_lm, h3, dh3)
        _block_edge_gradients(w, tables.harmonics, ws)
        gout = ws.gout
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
#: the 8 lanes, which is several times slower.
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
    rows c·n_lm + lm (the A rows of :class:`ProductTables`); rad3 (channels, slots, LANES),
    y3 (n_lm, slots, LANES). Eight lm rows share each load of R_c and run as eight
    independent sums: one sum at a time would wait on its own multiply-adds."""
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
def _ace_atoms_prange(
    n_ranges, vectors, neighbors, start, species, energies, grads,
    inv_r0, scale, offset, agnesi_p, agnesi_q, agnesi_a, cutoff, envelope_p,
    inner_start, inner_end,
    n_max, n_channels, exps, lower, degree_start, ycoef,
    n_rows, dest, left, right, weight, out, inp, values, site_constant,
):  # fmt: skip
    """:func:`_ace_atoms` over ``n_ranges`` contiguous ranges of atoms, one per thread, with
    the tables' fields flat: numba's parallel lowering passes arrays and scalars into a
    ``prange`` body, not tuples, so each thread puts its tables back together. The work stays
    in the serial function: the parallel lowering optimises loops less well."""
    n_atoms = species.shape[0]
    for b in numba.prange(n_ranges):
        tables = ACETables(
            RadialTables(
                inv_r0,
                scale,
                offset,
                agnesi_p,
                agnesi_q,
                agnesi_a,
                cutoff,
                envelope_p,
                inner_start,
                inner_end,
            ),  # fmt: skip
            n_max,
            n_channels,
            HarmonicTables(exps, lower, degree_start, ycoef),
            ProductTables(n_rows, dest, left, right, weight),
            ReadoutTables(out, inp, values, site_constant),
        )
        lo, hi = b * n_atoms // n_ranges, (b + 1) * n_atoms // n_ranges
        _ace_atoms(lo, hi, vectors, neighbors, start, species, tables, energies, grads)


@numba.njit(**JIT_OPTIONS)
def _ace_atoms_parallel(n_ranges, vectors, neighbors, start, species, tables, energies, grads):
    """:func:`_ace_atoms_prange` with the tables' fields taken apart."""
    r, h, p, o = tables.radial, tables.harmonics, tables.products, tables.readout
    _ace_atoms_prange(
        n_ranges, vectors, neighbors, start, species, energies, grads,
        r.inv_r0, r.scale, r.offset, r.agnesi_p, r.agnesi_q, r.agnesi_a, r.cutoff, r.envelope_p,
        r.inner_start, r.inner_end,
        tables.n_max, tables.n_channels, h.exps, h.lower, h.degree_start, h.ycoef,
        p.n_rows, p.dest, p.left, p.right, p.weight, o.out, o.inp, o.values, o.site_constant,
    )  # fmt: skip


#: (kernel, dtype) pairs called so far: the first call of each compiles with SLP on.
_compiled: set = set()


def ace_energies_and_grads(
    tables: ACETables,
    vectors: np.ndarray,
    neighbors: np.ndarray,
    offsets: np.ndarray,
    species: np.ndarray,
    n_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """E_i (n_atoms,) float64 and ∂E/∂r_e (n_edges, 3) in the dtype of ``vectors`` (float32 or
    float64, matching the tables'), for edges grouped by centre: ``offsets`` (n_atoms + 1,)
    int64 says where each centre's edges begin (:attr:`mlff.graph.EdgeArrays.offsets`);
    ``neighbors`` (n_edges,) and ``species`` (n_atoms,) int64. Atoms are split over
    ``n_threads`` threads in contiguous ranges.

    Site energies are summed in float64 whatever the dtype: rounded once, not to float32's
    ~5e-7 eV per atom, which would dominate a float32 run's NVE drift."""
    n_atoms = species.shape[0]
    energies = np.empty(n_atoms)
    grads = np.empty((vectors.shape[0], 3), dtype=vectors.dtype)  # every edge has a centre
    n_ranges = max(1, min(int(n_threads), n_atoms))
    if n_ranges == 1:
        kernel, split = _ace_atoms, (0, n_atoms)
    else:
        start_thread_pool()
        kernel, split = _ace_atoms_parallel, (n_ranges,)
    key = (kernel, vectors.dtype)
    if key in _compiled:
        kernel(*split, vectors, neighbors, offsets, species, tables, energies, grads)
    else:  # the first call of this dtype and mode compiles (or loads numba's cache)
        with slp_vectorized():  # SLP takes effect where a signature compiles
            kernel(*split, vectors, neighbors, offsets, species, tables, energies, grads)
        _compiled.add(key)
    return energies, grads
