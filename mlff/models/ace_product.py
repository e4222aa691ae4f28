"""Fast evaluation of the ACE invariants B from the atomic basis A.

Every invariant is written as a dot product, over M, of two *objects* of the same degree L:

* one-particle objects ``A_{c l}`` (l = L), and the constant object ``1`` (L = 0);
* coupled pairs ``T_{(c1 l1)(c2 l2) → L} = W^{l1 l2 L} · (A_{c1 l1} ⊗ A_{c2 l2})``.

Then ν=1 is ``A_{c0}·1``, ν=2 is ``T_{→0}·1``, ν=3 is ``T_{(12)→l3}·A_{c3 l3}`` and ν=4 is
``T_{(12)→L}·T_{(34)→L}``. Each coupled pair is computed once and shared by every invariant
that uses it, and all work is batched per (l1, l2) type and per L, so the cost is a few dozen
large tensor operations instead of one small operation per function.

Layouts: A per l is (channels, n_atoms, 2l+1); objects per L are (n_objects, n_atoms, 2L+1).

For MD, :meth:`InvariantProducts.energy_and_adjoint` folds the readout θ into one symmetric
matrix per L, ``M_L[a, b] = Σ_{k=(a,b)} θ_k + (a↔b)``, so the site energy is
``E_i = ½ Σ_L O_L·(M_L O_L)`` and its adjoint ``∂E/∂O_L = M_L O_L`` is one matrix product per L;
the coupled pairs then pull the adjoint back to A in closed form. No autograd graph is built.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from e3nn import o3
from torch import nn

from mlff.models.ace_basis import ACEBasisFunction

__all__ = ["InvariantProducts"]


class InvariantProducts(nn.Module):
    """Maps A (one tensor (channels, n_atoms, 2l+1) per l) to B (n_atoms, n_basis)."""

    def __init__(
        self, spec: list[ACEBasisFunction], elements: tuple[str, ...], n_max: int, l_max: int
    ):
        super().__init__()
        self.l_max = l_max
        self.n_channels = len(elements) * n_max
        zindex = {e: s for s, e in enumerate(elements)}

        def channel(factor) -> int:
            z, n, _ = factor
            return zindex[z] * n_max + n - 1

        # Coupled-pair registry: (l1, l2) → {(c1, c2): u}, and the L values each type needs.
        pairs: dict[tuple[int, int], dict[tuple[int, int], int]] = defaultdict(dict)
        pair_ls: dict[tuple[int, int], set[int]] = defaultdict(set)

        def pair_ref(f1, f2, L):
            """The coupled pair of f1, f2 → L in canonical order (l1, c1) <= (l2, c2), and the sign
            that order costs: W^{l2 l1 L} is W^{l1 l2 L} transposed times (-1)^(l1+l2+L)."""
            sign = 1.0
            if (f1[2], channel(f1)) > (f2[2], channel(f2)):
                f1, f2 = f2, f1
                sign = (-1.0) ** (f1[2] + f2[2] + L)
            key = (f1[2], f2[2])
            u = pairs[key].setdefault((channel(f1), channel(f2)), len(pairs[key]))
            pair_ls[key].add(L)
            return ("T", key, u), sign

        # Each function: (L, object a, object b), and its sign.
        plans, signs = [], []
        for fn in spec:
            f = fn.factors
            sign = 1.0
            if fn.order == 1:
                plans.append((0, ("A", 0, channel(f[0])), ("1",)))
            elif fn.order == 2:
                ref, sign = pair_ref(f[0], f[1], 0)
                plans.append((0, ref, ("1",)))
            elif fn.order == 3:
                ref, sign = pair_ref(f[0], f[1], f[2][2])
                plans.append((f[2][2], ref, ("A", f[2][2], channel(f[2]))))
            else:
                (L,) = fn.coupling
                (ref_a, sign_a), (ref_b, sign_b) = pair_ref(f[0], f[1], L), pair_ref(f[2], f[3], L)
                plans.append((L, ref_a, ref_b))
                sign = sign_a * sign_b
            signs.append(sign)
        self.register_buffer("_sign", torch.tensor(signs, dtype=torch.float64), persistent=False)

        # Pair types: channel index lists and the concatenated coupling matrix over their Ls.
        self.pair_types: list[tuple[int, int, tuple[int, ...]]] = []
        for t, key in enumerate(sorted(pairs)):
            l1, l2 = key
            ls = tuple(sorted(pair_ls[key]))
            chans = torch.tensor(list(pairs[key]), dtype=torch.long)  # (U, 2)
            w = torch.cat(
                [
                    o3.wigner_3j(l1, l2, L, dtype=torch.float64).reshape(
                        (2 * l1 + 1) * (2 * l2 + 1), 2 * L + 1
                    )
                    for L in ls
                ],
                dim=1,
            )  # (d1·d2, Σ_L (2L+1))
            self.register_buffer(f"_pc1_{t}", chans[:, 0].contiguous(), persistent=False)
            self.register_buffer(f"_pc2_{t}", chans[:, 1].contiguous(), persistent=False)
            if l1 == 0 or l2 == 0:
                # w3j(0 l l) and w3j(l 0 l) are multiples of the identity: store the diagonal.
                square = w.reshape(2 * max(l1, l2) + 1, -1)
                if not torch.allclose(square, torch.diag(torch.diagonal(square)), atol=1e-12):
                    raise RuntimeError(f"coupling ({l1} {l2}) is not diagonal")
                w = torch.diagonal(square).clone()
            self.register_buffer(f"_w_{t}", w, persistent=False)
            if l1 and l2:  # the transposed coupling (Σq, d1·d2), for the adjoint
                self.register_buffer(f"_wt_{t}", w.T.contiguous(), persistent=False)
            self.pair_types.append((l1, l2, ls))
        type_index = {key: t for t, key in enumerate(sorted(pairs))}

        # Object pools per L: [A_L channels] [1 if L == 0] [T blocks of each type having L].
        self.pool_layout: dict[int, list[tuple]] = {}
        offsets: dict[int, dict] = {}
        for L in range(self._max_L(plans) + 1):
            layout, off, pos = [], {}, 0
            if L <= l_max:
                layout.append(("A",))
                off["A"] = pos
                pos += self.n_channels
            if L == 0:
                layout.append(("1",))
                off["1"] = pos
                pos += 1
            for key in sorted(pairs):
                if L in pair_ls[key]:
                    t = type_index[key]
                    layout.append(("T", t))
                    off[("T", key)] = pos
                    pos += len(pairs[key])
            self.pool_layout[L] = layout
            offsets[L] = off

        def flat(L, obj) -> int:
            if obj[0] == "A":
                return offsets[L]["A"] + obj[2]
            if obj[0] == "1":
                return offsets[L]["1"]
            return offsets[L][("T", obj[1])] + obj[2]

        by_L: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for k, (L, a, b) in enumerate(plans):
            by_L[L].append((k, flat(L, a), flat(L, b)))
        self.final_ls = sorted(by_L)
        order = []
        for L in self.final_ls:
            rows = torch.tensor(by_L[L], dtype=torch.long)
            self.register_buffer(f"_fa_{L}", rows[:, 1].contiguous(), persistent=False)
            self.register_buffer(f"_fb_{L}", rows[:, 2].contiguous(), persistent=False)
            self.register_buffer(f"_fk_{L}", rows[:, 0].contiguous(), persistent=False)
            order.extend(rows[:, 0].tolist())
        # Object pool sizes and, per pair type, where its blocks sit in each pool.
        self.pool_size = {
            L: sum(self._item_size(item) for item in layout)
            for L, layout in self.pool_layout.items()
        }
        self.pair_offsets: dict[int, list[tuple[int, int]]] = defaultdict(
            list
        )  # type → [(L, start)]
        for L, layout in self.pool_layout.items():
            pos = 0
            for item in layout:
                if item[0] == "T":
                    self.pair_offsets[item[1]].append((L, pos))
                pos += self._item_size(item)
        self._folded: tuple | None = None
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        self.register_buffer("_to_spec_order", inverse, persistent=False)

    def _item_size(self, item) -> int:
        if item[0] == "A":
            return self.n_channels
        if item[0] == "1":
            return 1
        return getattr(self, f"_pc1_{item[1]}").numel()

    def _pool(self, L: int, a_by_l, coupled: dict, cursor: dict) -> torch.Tensor:
        """The objects of degree L, (n_obj, N, 2L+1), in ``pool_layout[L]`` order; advances
        ``cursor[t]`` over the blocks of coupled-pair type t it uses."""
        n_atoms = a_by_l[0].shape[1]
        pool = []
        for item in self.pool_layout[L]:
            if item[0] == "A":
                pool.append(a_by_l[L])
            elif item[0] == "1":
                pool.append(a_by_l[0].new_ones(1, n_atoms, 1))
            else:
                t = item[1]
                pool.append(coupled[t][cursor[t]])
                cursor[t] += 1
        return torch.cat(pool, dim=0) if len(pool) > 1 else pool[0]

    @staticmethod
    def _max_L(plans) -> int:
        return max(L for L, _, _ in plans)

    def forward(self, a_by_l: list[torch.Tensor]) -> torch.Tensor:
        """B (n_atoms, n_basis) from A per l: a_by_l[l] has shape (channels, n_atoms, 2l+1)."""
        n_atoms = a_by_l[0].shape[1]
        coupled: dict[int, list[torch.Tensor]] = {}  # type → blocks per L
        for t, (l1, l2, ls) in enumerate(self.pair_types):
            x1 = a_by_l[l1].index_select(0, getattr(self, f"_pc1_{t}"))  # (U, N, d1)
            x2 = a_by_l[l2].index_select(0, getattr(self, f"_pc2_{t}"))  # (U, N, d2)
            w = getattr(self, f"_w_{t}")
            if l1 == 0 or l2 == 0:
                pair = x1 * x2 * w  # (U, N, 2l+1): the coupling is diagonal
            else:
                # Σ_{m1 m2} W[m1 m2 q] x1[m1] x2[m2]: one matmul over m1, then a weighted sum
                # over m2; cheaper than forming the outer product x1 ⊗ x2.
                n_pairs, d1, d2 = x1.shape[0], 2 * l1 + 1, 2 * l2 + 1
                y = (x1.reshape(-1, d1) @ w.reshape(d1, -1)).reshape(n_pairs, n_atoms, d2, -1)
                pair = (y * x2.unsqueeze(-1)).sum(-2)  # (U, N, Σ_L (2L+1))
            coupled[t] = list(torch.split(pair, [2 * L + 1 for L in ls], dim=-1))
        cursor = {t: 0 for t in coupled}
        columns = []
        for L in sorted(self.pool_layout):
            objects = self._pool(L, a_by_l, coupled, cursor)  # (n_obj, N, 2L+1)
            if L not in self.final_ls:
                continue
            fa = objects.index_select(0, getattr(self, f"_fa_{L}"))
            fb = objects.index_select(0, getattr(self, f"_fb_{L}"))
            columns.append((fa * fb).sum(-1))  # (K_L, N)
        b = (
            torch.cat(columns, dim=0).index_select(0, self._to_spec_order) * self._sign[:, None]
        )  # (n_basis, N)
        return b.transpose(0, 1)

    def _head_size(self, L: int) -> int:
        """Objects A_L and 1 come first in each pool; T blocks follow."""
        return sum(self._item_size(item) for item in self.pool_layout[L] if item[0] != "T")

    def _fold(self, theta: torch.Tensor) -> dict[int, tuple]:
        """θ (n_species, n_basis) → per L, the symmetric ``M_L`` (n_species, n_obj, n_obj) split
        into head (A, 1) and tail (T) blocks: (M_hh, M_ht, M_th, M_tt or None).

        Without ν = 4 functions the T×T block is zero and skipped, which saves most of the
        work. Cached on θ's identity and version, so MD pays for it once.
        """
        key = (theta.data_ptr(), theta._version, theta.dtype, theta.device, tuple(theta.shape))
        if self._folded is not None and self._folded[0] == key:
            return self._folded[1]
        n_species = theta.shape[0]
        folded = {}
        for L in self.final_ls:
            n, h = self.pool_size[L], self._head_size(L)
            flat = getattr(self, f"_fa_{L}") * n + getattr(self, f"_fb_{L}")  # (K_L,)
            ks = getattr(self, f"_fk_{L}")
            values = theta[:, ks] * self._sign[ks]  # (S, K_L)
            m = theta.new_zeros(n_species, n * n)
            m.index_add_(1, flat, values)
            m = m.reshape(n_species, n, n)
            m = m + m.transpose(1, 2)
            tail = m[:, h:, h:]
            folded[L] = (
                m[:, :h, :h].contiguous(),
                m[:, :h, h:].contiguous(),
                m[:, h:, :h].contiguous(),
                tail.contiguous() if bool(tail.any()) else None,
            )
        self._folded = (key, folded)
        return folded

    @staticmethod
    def _apply_folded(
        m: torch.Tensor, x: torch.Tensor, species: torch.Tensor, arange
    ) -> torch.Tensor:
        """(M_{s_i} x_i) for every atom: m (S, r, c), x (c, N, d) → (r, N, d)."""
        n_species, rows = m.shape[0], m.shape[1]
        flat = x.reshape(x.shape[0], -1)
        if n_species == 1:
            return (m[0] @ flat).reshape(rows, *x.shape[1:])
        every = (m.reshape(-1, x.shape[0]) @ flat).reshape(n_species, rows, *x.shape[1:])
        return every[species, :, arange, :].transpose(0, 1)

    def energy_and_adjoint(
        self, a_by_l: list[torch.Tensor], theta: torch.Tensor, species: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Site energies ``E_i = Σ_k θ_{s_i k} B_ik`` (n_atoms,) and ``∂E/∂A`` per l
        (channels, n_atoms, 2l+1), in closed form.

        Args:
            a_by_l: A per l, (channels, n_atoms, 2l+1).
            theta: (n_species, n_basis) readout, columns in ``spec`` order.
            species: (n_atoms,) species index of each centre.
        """
        n_atoms = a_by_l[0].shape[1]
        n_species = theta.shape[0]
        folded = self._fold(theta)
        saved: dict[int, tuple] = {}
        coupled: dict[int, list[torch.Tensor]] = {}
        for t, (l1, l2, ls) in enumerate(self.pair_types):
            x1 = a_by_l[l1].index_select(0, getattr(self, f"_pc1_{t}"))
            x2 = a_by_l[l2].index_select(0, getattr(self, f"_pc2_{t}"))
            w = getattr(self, f"_w_{t}")
            if l1 == 0 or l2 == 0:
                pair = x1 * x2 * w
            else:
                # x1 ⊗ x2 then one contiguous matrix product with W (d1·d2, Σq).
                outer = (x1.unsqueeze(-1) * x2.unsqueeze(-2)).reshape(-1, w.shape[0])
                pair = (outer @ w).reshape(x1.shape[0], n_atoms, -1)
            saved[t] = (x1, x2)
            coupled[t] = list(torch.split(pair, [2 * L + 1 for L in ls], dim=-1))
        cursor = {t: 0 for t in coupled}
        energy = a_by_l[0].new_zeros(n_atoms)
        adjoint = [torch.zeros_like(a) for a in a_by_l]
        pair_adjoint: dict[int, list[torch.Tensor]] = defaultdict(list)
        arange = torch.arange(n_atoms, device=species.device) if n_species > 1 else None
        for L in sorted(self.pool_layout):
            objects = self._pool(L, a_by_l, coupled, cursor)  # (n_obj, N, d)
            if L in folded:
                m_hh, m_ht, m_th, m_tt = folded[L]
                h = m_hh.shape[1]
                head, tail = objects[:h], objects[h:]
                grad_head = self._apply_folded(m_hh, head, species, arange)
                grad_tail = self._apply_folded(m_th, head, species, arange)
                if tail.shape[0]:
                    grad_head = grad_head + self._apply_folded(m_ht, tail, species, arange)
                    if m_tt is not None:
                        grad_tail = grad_tail + self._apply_folded(m_tt, tail, species, arange)
                grad = torch.cat([grad_head, grad_tail], dim=0)  # (n_obj, N, d) = M_L O_L
                energy = energy + 0.5 * (objects * grad).sum((0, 2))
            else:  # objects only used inside higher-L products
                grad = torch.zeros_like(objects)
            pos = 0
            for item in self.pool_layout[L]:
                size = self._item_size(item)
                if item[0] == "A":
                    adjoint[L] = adjoint[L] + grad[pos : pos + size]
                elif item[0] == "T":
                    pair_adjoint[item[1]].append(grad[pos : pos + size])
                pos += size
        for t, (l1, l2, ls) in enumerate(self.pair_types):
            g = (
                torch.cat(pair_adjoint[t], dim=-1) if len(ls) > 1 else pair_adjoint[t][0]
            )  # (U, N, Σq)
            x1, x2 = saved[t]
            w = getattr(self, f"_w_{t}")
            if l1 == 0 and l2 == 0:
                gw = g * w
                g1, g2 = gw * x2, gw * x1
            elif l1 == 0:
                gw = g * w
                g1, g2 = (gw * x2).sum(-1, keepdim=True), gw * x1
            elif l2 == 0:
                gw = g * w
                g1, g2 = gw * x2, (gw * x1).sum(-1, keepdim=True)
            else:
                # y[u i, m1, m2] = Σ_q W[m1 m2 q] g[u, i, q]; then batched mat-vecs with x2 and x1.
                n_pairs, d1, d2 = x1.shape[0], 2 * l1 + 1, 2 * l2 + 1
                y = (g.reshape(-1, g.shape[-1]) @ getattr(self, f"_wt_{t}")).reshape(-1, d1, d2)
                g1 = torch.bmm(y, x2.reshape(-1, d2, 1)).reshape(n_pairs, n_atoms, d1)
                g2 = torch.bmm(x1.reshape(-1, 1, d1), y).reshape(n_pairs, n_atoms, d2)
            adjoint[l1] = adjoint[l1].index_add(0, getattr(self, f"_pc1_{t}"), g1)
            adjoint[l2] = adjoint[l2].index_add(0, getattr(self, f"_pc2_{t}"), g2)
        return energy, adjoint
