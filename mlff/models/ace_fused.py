"""Fused CPU evaluation of ACE site energies and edge gradients, compiled with numba.

The torch closed form (:meth:`ACEModel.site_energies_and_grads_torch`) runs about 150 tensor
operations per call; on a CPU most of their cost is dispatch and memory traffic on small
tensors, while the arithmetic is only about 15k multiply-adds per atom for the products and
a few hundred per edge. Here one compiled loop visits each atom once, with its data in cache:

1. over the atom's edges: R_n, dR_n/dr, the monomials of r̂ and Y_lm; ``A_{(z_j,n),lm} += R_n Y_lm``;
2. the objects of degree L (A, 1, coupled pairs T) and ``E_i = ½ Σ_L O_L·(M_L O_L)`` with the
   folded readout M_L; the adjoint ``H = ∂E_i/∂A`` through M_L and the couplings of T;
3. over the atom's edges again: ``∂E_i/∂r_e = r̂ Σ g_lm Y_lm + (Σ h_lm ∇P_lm(r̂) − Σ l h_lm Y_lm r̂) / r``
   with ``h_lm = Σ_n H R_n``, ``g_lm = Σ_n H R'_n`` and ``P_lm = r^l Y_lm`` the solid harmonics.

Atoms are split into contiguous blocks, one per thread. Everything the loop reads is derived
from the model's own modules (radial constants, the product plan and folded readout of
:class:`~mlff.models.ace_product.InvariantProducts`, e3nn's harmonics), so this file owns no
convention of its own; tests compare it with the torch closed form.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from mlff.models.harmonics import monomial_expansion
from mlff.models.kernels import JIT_OPTIONS, radial_with_derivative

__all__ = ["FusedACE"]


def _product_tables(products, n_lm: int):
    """Flatten the product plan of an :class:`InvariantProducts` into per-atom index tables.

    An atom's objects of degree L (``products.pool_layout[L]``: A channels, 1, coupled pairs)
    sit in one buffer, pool L at ``pool_off[L]`` as a (2L+1, n_L) block, so that the folded
    readout ``M_L`` acts on contiguous rows. Coupled pair u (type t) writes its value q to
    ``t_loc[t_ptr[u] + q]``; the nonzeros of type t's coupling are grouped by q.
    """
    n_channels = products.n_channels
    n_pools = max(products.pool_layout) + 1
    pool_n = np.array([products.pool_size.get(L, 0) for L in range(n_pools)], dtype=np.int64)
    pool_off = np.zeros(n_pools + 1, dtype=np.int64)
    for L in range(n_pools):
        pool_off[L + 1] = pool_off[L] + (2 * L + 1) * pool_n[L]
    rows: dict[int, dict[int, int]] = {}  # type → {L: first row of its block in pool L}
    for L, layout in products.pool_layout.items():
        pos = 0
        for item in layout:
            if item[0] == "T":
                rows.setdefault(item[1], {})[L] = pos
            pos += products._item_size(item)
    pair_a1, pair_a2, pair_type, t_ptr, t_loc = [], [], [], [0], []
    q_ptr, nz_m1, nz_m2, nz_w = [], [], [], []  # q_ptr[t] has Σq + 1 entries into the nonzeros
    type_q = [0]
    for t, (l1, l2, ls) in enumerate(products.pair_types):
        w = getattr(products, f"_w_{t}").double().numpy()
        size = sum(2 * L + 1 for L in ls)
        if l1 == 0 or l2 == 0:  # stored as the diagonal of a (2l+1)-square coupling
            full = np.zeros((2 * l1 + 1, 2 * l2 + 1, size))
            for m, value in enumerate(w):
                full[m if l1 else 0, m if l2 else 0, m] = value
        else:
            full = w.reshape(2 * l1 + 1, 2 * l2 + 1, size)
        ptr = [len(nz_w)]
        for q in range(size):
            for m1, m2 in zip(*np.nonzero(np.abs(full[:, :, q]) > 1e-15)):
                nz_m1.append(int(m1))
                nz_m2.append(int(m2))
                nz_w.append(float(full[m1, m2, q]))
            ptr.append(len(nz_w))
        q_ptr += ptr
        type_q.append(len(q_ptr))
        c1 = getattr(products, f"_pc1_{t}").tolist()
        c2 = getattr(products, f"_pc2_{t}").tolist()
        for u, (a, b) in enumerate(zip(c1, c2)):
            pair_a1.append(a * n_lm + l1 * l1)
            pair_a2.append(b * n_lm + l2 * l2)
            pair_type.append(t)
            for L in ls:
                n_L = pool_n[L]
                t_loc += [pool_off[L] + m * n_L + rows[t][L] + u for m in range(2 * L + 1)]
            t_ptr.append(len(t_loc))
    i64 = lambda x: np.array(x, dtype=np.int64)  # noqa: E731
    # Unsigned offsets spare numba the negative-index check on the innermost gathers.
    u64 = lambda x: np.array(x, dtype=np.uint64)  # noqa: E731
    return (
        pool_n, pool_off, u64(pair_a1), u64(pair_a2), i64(pair_type), i64(t_ptr), u64(t_loc),
        i64(type_q), i64(q_ptr), u64(nz_m1), u64(nz_m2), np.array(nz_w, dtype=np.float64),
    )


def _folded_tables(products, theta: torch.Tensor, n_pools: int):
    """The folded readout ``M_L = M_L^T`` of :meth:`InvariantProducts._fold` per pool, as one
    (n_species, Σ_L n_L²) array with offsets (n_pools+1,), head sizes and final flags."""
    folded = products._fold(theta.detach().double().cpu())
    n_species = theta.shape[0]
    blocks, offsets, heads, final = [], [0], [], []
    for L in range(n_pools):
        n = products.pool_size.get(L, 0)
        m = np.zeros((n_species, n, n))
        if L in folded:
            m_hh, m_ht, m_th, m_tt = (x.numpy() if x is not None else None for x in folded[L])
            h = m_hh.shape[1]
            m[:, :h, :h], m[:, :h, h:], m[:, h:, :h] = m_hh, m_ht, m_th
            if m_tt is not None:
                m[:, h:, h:] = m_tt
            heads.append(h)
            final.append(2 if m_tt is not None else 1)
        else:
            heads.append(n)
            final.append(0)
        blocks.append(m.reshape(n_species, n * n))
        offsets.append(offsets[-1] + n * n)
    return (np.concatenate(blocks, axis=1), np.array(offsets, dtype=np.int64),
            np.array(heads, dtype=np.int64), np.array(final, dtype=np.int64))


@numba.njit(**JIT_OPTIONS)
def _edge_basis(vx, vy, vz, r, ir0, scale, offset, agnesi, cutoff, env_p, exps, degree_start, ycoef,
                px, py, pz, rad, drad, mono, ylm):
    """R_n, dR_n/dr (n_max,), the monomials of r̂ (n_mono,) and Y_lm (n_lm,) of one edge."""
    radial_with_derivative(r, ir0, scale, offset, agnesi, cutoff, env_p, rad, drad)
    # Monomials of r̂, and Y_lm = Σ coef · monomial over the monomials of degree l.
    l_max = degree_start.shape[0] - 2
    inv_r = 1.0 / r
    px[0] = 1.0
    py[0] = 1.0
    pz[0] = 1.0
    for k in range(1, l_max + 1):
        px[k] = px[k - 1] * vx * inv_r
        py[k] = py[k - 1] * vy * inv_r
        pz[k] = pz[k - 1] * vz * inv_r
    for k in range(mono.shape[0]):
        mono[k] = px[exps[k, 0]] * py[exps[k, 1]] * pz[exps[k, 2]]
    for l in range(l_max + 1):
        lo, hi = degree_start[l], degree_start[l + 1]
        mono_l = mono[lo:hi]
        for lm in range(l * l, (l + 1) * (l + 1)):
            coef = ycoef[lm, lo:hi]
            acc = 0.0
            for k in range(hi - lo):
                acc += coef[k] * mono_l[k]
            ylm[lm] = acc


@numba.njit(**JIT_OPTIONS)
def _site_products(a, s, n_channels, buf, grad, h_adj, pool_n, pool_off, pair_a1, pair_a2, pair_type, t_ptr,
                   t_loc, type_q, q_ptr, nz_m1, nz_m2, nz_w, mats, mat_off, heads, final):
    """E_i = ½ Σ_L O_L·(M_L O_L) of one atom from its A (channels·n_lm,); H = ∂E_i/∂A into h_adj."""
    n_a = a.shape[0]
    n_lm = n_a // n_channels
    n_pools = pool_n.shape[0]
    l_max = int(np.sqrt(n_lm) + 0.5) - 1
    for L in range(min(l_max, n_pools - 1) + 1):
        n_L, off = pool_n[L], pool_off[L]
        for m in range(2 * L + 1):
            for c in range(n_channels):
                buf[off + m * n_L + c] = a[c * n_lm + L * L + m]
    buf[pool_off[0] + n_channels] = 1.0
    for u in range(pair_a1.shape[0]):
        t, a1, a2 = pair_type[u], pair_a1[u], pair_a2[u]
        k = t_ptr[u]
        for q in range(type_q[t], type_q[t + 1] - 1):
            acc = 0.0
            for z in range(q_ptr[q], q_ptr[q + 1]):
                acc += nz_w[z] * a[a1 + nz_m1[z]] * a[a2 + nz_m2[z]]
            buf[t_loc[k]] = acc
            k += 1
    energy = 0.0
    for L in range(n_pools):
        n_L, off, h = pool_n[L], pool_off[L], heads[L]
        if final[L] == 0:
            for k in range(off, pool_off[L + 1]):
                grad[k] = 0.0
            continue
        mat = mats[s, mat_off[L] : mat_off[L + 1]]
        for m in range(2 * L + 1):
            # Slices keep inner indices plain counters, which lets LLVM vectorise.
            obj = buf[off + m * n_L : off + (m + 1) * n_L]
            out = grad[off + m * n_L : off + (m + 1) * n_L]
            # M is symmetric: head rows are dot products over the whole pool, and the
            # tail's head coupling M_th·head = Σ_c head_c M[c, tail] is a sum of rows.
            tail_out = out[h:]
            for r in range(h, n_L):
                out[r] = 0.0
            for r in range(h):
                row = mat[r * n_L : (r + 1) * n_L]
                acc = 0.0
                for c in range(n_L):
                    acc += row[c] * obj[c]
                out[r] = acc
                head_c = obj[r]
                tail_row = row[h:]
                for c in range(n_L - h):
                    tail_out[c] += head_c * tail_row[c]
            if final[L] == 2:
                tail = obj[h:]
                for r in range(h, n_L):
                    row = mat[r * n_L + h : (r + 1) * n_L]
                    acc = 0.0
                    for c in range(n_L - h):
                        acc += row[c] * tail[c]
                    out[r] += acc
            for r in range(n_L):
                energy += 0.5 * out[r] * obj[r]
    for k in range(n_a):
        h_adj[k] = 0.0
    for L in range(min(l_max, n_pools - 1) + 1):
        n_L, off = pool_n[L], pool_off[L]
        for m in range(2 * L + 1):
            for c in range(n_channels):
                h_adj[c * n_lm + L * L + m] = grad[off + m * n_L + c]
    for u in range(pair_a1.shape[0]):
        t, a1, a2 = pair_type[u], pair_a1[u], pair_a2[u]
        k = t_ptr[u]
        for q in range(type_q[t], type_q[t + 1] - 1):
            g = grad[t_loc[k]]
            k += 1
            if g == 0.0:
                continue
            for z in range(q_ptr[q], q_ptr[q + 1]):
                gw = g * nz_w[z]
                h_adj[a1 + nz_m1[z]] += gw * a[a2 + nz_m2[z]]
                h_adj[a2 + nz_m2[z]] += gw * a[a1 + nz_m1[z]]
    return energy


@numba.njit(**JIT_OPTIONS)
def _edge_gradient(h_adj, base, n_lm, rad, drad, mono, ylm, exps, lower, degree_start, ycoef, h, weights,
                   vx, vy, vz, r, out):
    """∂E_i/∂r_e (3,) of one edge: r̂ Σ g_lm Y_lm + (Σ h_lm ∇P_lm(r̂) − Σ l h_lm Y_lm r̂) / r."""
    n_max = rad.shape[0]
    l_max = degree_start.shape[0] - 2
    along = 0.0
    for lm in range(n_lm):
        h[lm] = 0.0
    for n in range(n_max):
        rn, dn = rad[n], drad[n]
        h_row = h_adj[(base + n) * n_lm : (base + n + 1) * n_lm]
        for lm in range(n_lm):
            hv = h_row[lm]
            h[lm] += hv * rn
            along += hv * dn * ylm[lm]
    radial_l = 0.0
    for l in range(l_max + 1):
        lo, hi = degree_start[l], degree_start[l + 1]
        w_l = weights[lo:hi]
        for k in range(hi - lo):
            w_l[k] = 0.0
        for lm in range(l * l, (l + 1) * (l + 1)):
            hl = h[lm]
            radial_l += l * hl * ylm[lm]
            coef = ycoef[lm, lo:hi]
            for k in range(hi - lo):
                w_l[k] += hl * coef[k]
    gx, gy, gz = 0.0, 0.0, 0.0
    for k in range(degree_start[1], mono.shape[0]):
        wk = weights[k]
        gx += wk * exps[k, 0] * mono[lower[k, 0]]
        gy += wk * exps[k, 1] * mono[lower[k, 1]]
        gz += wk * exps[k, 2] * mono[lower[k, 2]]
    inv_r = 1.0 / r
    ux, uy, uz = vx * inv_r, vy * inv_r, vz * inv_r
    out[0] = ux * along + (gx - radial_l * ux) * inv_r
    out[1] = uy * along + (gy - radial_l * uy) * inv_r
    out[2] = uz * along + (gz - radial_l * uz) * inv_r


@numba.njit(**JIT_OPTIONS)
def _ace_atoms(first, stop, vectors, neighbors, order, start, species, n_max, n_channels,
               inv_r0, scale, offset, agnesi, cutoff, env_p, exps, lower, degree_start, ycoef,
               pool_n, pool_off, pair_a1, pair_a2, pair_type, t_ptr, t_loc, type_q, q_ptr,
               nz_m1, nz_m2, nz_w, mats, mat_off, heads, final, energies, grads):
    """Atoms ``first`` ≤ i < ``stop``: A_i from the edges ``order[start[i]:start[i+1]]``,
    E_i and H_i, then ∂E_i/∂r_e for those edges."""
    n_lm = ycoef.shape[0]
    n_mono = exps.shape[0]
    l_max = degree_start.shape[0] - 2
    width = 1
    for i in range(first, stop):
        width = max(width, start[i + 1] - start[i])
    dt = vectors.dtype
    a = np.empty(n_channels * n_lm, dtype=dt)
    h_adj = np.empty(n_channels * n_lm, dtype=dt)
    buf = np.empty(pool_off[-1], dtype=dt)
    grad = np.empty(pool_off[-1], dtype=dt)
    rad = np.zeros((width, n_max), dtype=dt)
    drad = np.zeros((width, n_max), dtype=dt)
    mono = np.zeros((width, n_mono), dtype=dt)
    ylm = np.zeros((width, n_lm), dtype=dt)
    px = np.empty(l_max + 1, dtype=dt)
    py = np.empty(l_max + 1, dtype=dt)
    pz = np.empty(l_max + 1, dtype=dt)
    h = np.empty(n_lm, dtype=dt)
    weights = np.empty(n_mono, dtype=dt)
    for i in range(first, stop):
        si = species[i]
        for k in range(a.shape[0]):
            a[k] = 0.0
        for p in range(start[i], start[i + 1]):
            e, slot = order[p], p - start[i]
            vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
            r = np.sqrt(vx * vx + vy * vy + vz * vz)
            if r >= cutoff:
                continue
            sj = species[neighbors[e]]
            _edge_basis(vx, vy, vz, r, inv_r0[si, sj], scale[si, sj], offset[si, sj], agnesi, cutoff,
                        env_p, exps, degree_start, ycoef, px, py, pz, rad[slot], drad[slot], mono[slot], ylm[slot])
            y_e = ylm[slot]
            for n in range(n_max):
                rn = rad[slot, n]
                a_row = a[(sj * n_max + n) * n_lm : (sj * n_max + n + 1) * n_lm]
                for lm in range(n_lm):
                    a_row[lm] += rn * y_e[lm]
        energies[i] = _site_products(a, si, n_channels, buf, grad, h_adj, pool_n, pool_off, pair_a1, pair_a2,
                                     pair_type, t_ptr, t_loc, type_q, q_ptr, nz_m1, nz_m2, nz_w, mats,
                                     mat_off, heads, final)
        for p in range(start[i], start[i + 1]):
            e, slot = order[p], p - start[i]
            vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
            r = np.sqrt(vx * vx + vy * vy + vz * vz)
            if r >= cutoff:
                grads[e, 0] = 0.0
                grads[e, 1] = 0.0
                grads[e, 2] = 0.0
                continue
            _edge_gradient(h_adj, species[neighbors[e]] * n_max, n_lm, rad[slot], drad[slot], mono[slot],
                           ylm[slot], exps, lower, degree_start, ycoef, h, weights, vx, vy, vz, r, grads[e])


@numba.njit(parallel=True, **JIT_OPTIONS)
def _ace_atoms_parallel(n_blocks, vectors, neighbors, order, start, species, *tables):
    """:func:`_ace_atoms` over ``n_blocks`` contiguous blocks of atoms, one per thread. The
    work stays in the serial function: numba's parallel lowering optimises loops less well."""
    n_atoms = species.shape[0]
    for b in numba.prange(n_blocks):
        _ace_atoms(b * n_atoms // n_blocks, (b + 1) * n_atoms // n_blocks, vectors, neighbors, order, start,
                   species, *tables)


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
        self.pair_tables = _product_tables(model.products, self.n_lm)
        self._coef_key = None
        self._cast: dict = {}

    def _tables(self, dtype):
        """Float tables in the evaluation dtype (cached per dtype)."""
        cast = self._cast.get(dtype)
        if cast is None:
            pt = self.pair_tables
            cast = (self.radial.kernel_constants(dtype), np.ascontiguousarray(self.ycoef, dtype=dtype),
                    pt[:-1] + (np.ascontiguousarray(pt[-1], dtype=dtype),))
            self._cast[dtype] = cast
        return cast

    def _readout(self, theta: torch.Tensor, dtype) -> tuple:
        """The folded readout tables for θ (n_species, n_basis), cached on θ's version."""
        key = (theta.data_ptr(), theta._version, dtype)
        if self._coef_key != key:
            mats, offsets, heads, final = _folded_tables(self.products, theta, len(self.pair_tables[0]))
            self._coef_value = (np.ascontiguousarray(mats, dtype=dtype), offsets, heads, final)
            self._coef_key = key
        return self._coef_value

    def __call__(self, vectors: np.ndarray, centers: np.ndarray, neighbors: np.ndarray,
                 species: np.ndarray, theta: torch.Tensor, n_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) for one graph (numpy, float32 or float64),
        atoms split over ``n_threads`` threads."""
        dtype = vectors.dtype
        n_atoms, n_edges = species.shape[0], vectors.shape[0]
        radial_constants, ycoef, pair_tables = self._tables(dtype)
        counts = np.bincount(centers, minlength=n_atoms)
        start = np.zeros(n_atoms + 1, dtype=np.int64)
        np.cumsum(counts, out=start[1:])
        # Graphs from mlff.graph have their edges grouped by centre already.
        order = np.arange(n_edges) if n_edges < 2 or (np.diff(centers) >= 0).all() else np.argsort(centers, kind="stable")
        energies = np.empty(n_atoms, dtype=dtype)
        grads = np.zeros((n_edges, 3), dtype=dtype)
        n_blocks = max(1, min(int(n_threads), n_atoms))
        tables = (self.n_max, self.n_channels, *radial_constants, self.exps, self.lower, self.degree_start, ycoef,
                  *pair_tables, *self._readout(theta, dtype), energies, grads)
        if n_blocks == 1:
            _ace_atoms(0, n_atoms, vectors, neighbors, order, start, species, *tables)
        else:
            numba.set_num_threads(min(n_blocks, numba.config.NUMBA_NUM_THREADS))
            _ace_atoms_parallel(n_blocks, vectors, neighbors, order, start, species, *tables)
        return energies, grads
