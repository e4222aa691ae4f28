"""Fast evaluation of the ACE invariants B from the atomic basis A.

Every invariant is written as a dot product, over M, of two *objects* of the same degree L:

* one-particle objects ``A_{c L}`` (channel c, l = L), and the constant object ``1`` (L = 0);
* coupled pairs ``T_{(c1 l1)(c2 l2) → L} = W^{l1 l2 L} · (A_{c1 l1} ⊗ A_{c2 l2})``.

Then ν=1 is ``A_{c0}·1``, ν=2 is ``T_{→0}·1``, ν=3 is ``T_{(12)→l3}·A_{c3 l3}`` and ν=4 is
``T_{(12)→L}·T_{(34)→L}``. Each coupled pair is computed once and shared by every invariant
that uses it, and all work is batched per (l1, l2) type and per L, so the cost is a few dozen
large tensor operations instead of one small operation per function.

The :class:`ProductPlan` (built by :func:`product_plan`) is this rewriting as plain, read-only
numpy arrays: the torch module :class:`InvariantProducts`, the compiled kernel's tables
(:mod:`mlff.models.ace_tables`) and exporters all read it, so the factorisation is defined once.

A channel is ``c = s·n_max + n − 1`` for neighbour element index s and radial index n. In torch,
A per l is (channels, n_atoms, 2l+1) and the objects of degree L are (n_L, n_atoms, 2L+1).

For MD, :meth:`InvariantProducts.fold` turns the readout θ into one symmetric matrix per L,
``M_L[a, b] = Σ_{k=(a,b)} sign_k θ_k + (a↔b)``, so the site energy is
``E_i = ½ Σ_L O_L·(M_L O_L)`` and its adjoint ``∂E/∂O_L = M_L O_L`` is one matrix product per L;
the coupled pairs then pull the adjoint back to A in closed form. No autograd graph is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from e3nn import o3
from torch import nn

from mlff.models.ace_basis import ACEBasisFunction

__all__ = [
    "CoupledPairType",
    "InvariantProducts",
    "Pool",
    "ProductPlan",
    "product_plan",
]

#: A one-particle factor (l, channel).
_Factor = tuple[int, int]


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array``, C-contiguous and read-only: plans are shared, so nobody may edit them."""
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class CoupledPairType:
    """The coupled pairs ``T_{(c1 l1)(c2 l2) → L}`` of one degree pair (l1, l2), l1 ≤ l2.

    Attributes:
        l1, l2: degrees of the first and second factor.
        ls: the degrees L, ascending, at which some basis function reads these pairs.
        channels: (U, 2) int64, the channels (c1, c2) of pair u. When l1 = l2, c1 ≤ c2.
        coupling: (2l1+1, 2l2+1, Σ_L (2L+1)) float64, e3nn's Wigner 3j symbols
            ``w3j(l1, l2, L)`` for L in ``ls`` side by side on the last axis: value q of pair u
            is ``Σ_{m1 m2} coupling[m1, m2, q] A_{c1 l1 m1} A_{c2 l2 m2}``.
    """

    l1: int
    l2: int
    ls: tuple[int, ...]
    channels: np.ndarray
    coupling: np.ndarray

    @property
    def n_pairs(self) -> int:
        return self.channels.shape[0]

    @property
    def widths(self) -> list[int]:
        """2L+1 for each L in ``ls``: how the last axis of ``coupling`` splits."""
        return [2 * L + 1 for L in self.ls]

    def __deepcopy__(self, memo) -> CoupledPairType:
        return self  # immutable: a copy may share it, and its arrays stay read-only

    def __repr__(self) -> str:
        return f"CoupledPairType(l1={self.l1}, l2={self.l2}, ls={self.ls}, n_pairs={self.n_pairs})"


@dataclass(frozen=True)
class Pool:
    """The objects of degree L, in order: A_{c L} for every channel c (objects 0 … n_a − 1),
    the constant 1 (object n_a, if ``has_one``), then one block of coupled pairs per type.

    Attributes:
        L: the degree.
        n_a: number of A objects: n_channels if L ≤ l_max, else 0.
        has_one: whether the pool holds the constant 1 (L = 0 only).
        blocks: (type index t, start) per coupled block: pair u of ``plan.types[t]`` at this L
            is object ``start + u``; starts ascend and the blocks fill the pool to ``size``.
        size: number of objects n_L.
    """

    L: int
    n_a: int
    has_one: bool
    blocks: tuple[tuple[int, int], ...]
    size: int

    @property
    def head(self) -> int:
        """Number of objects before the first coupled block (A and 1)."""
        return self.n_a + int(self.has_one)


@dataclass(frozen=True, eq=False)
class ProductPlan:
    """Every basis function as ``B_k = sign_k · O_{L,a} · O_{L,b}`` (dot product over the 2L+1
    components) of two objects of the pool of degree L. Arrays are read-only.

    Attributes:
        n_channels: channels of A (n_elements · n_max).
        l_max: the largest degree of A.
        types: the coupled pair types, sorted by (l1, l2).
        pools: ``pools[L]`` for L = 0 … max L of any basis function.
        terms: ``terms[L]`` (K_L, 3) int64, rows (basis index k, object a, object b) of the
            functions of degree L, k ascending; every k appears in exactly one row over all L.
        sign: (n_basis,) float64, ±1: the sign that writing B_k with its pairs in canonical
            order (l1, c1) ≤ (l2, c2) costs (w3j(l2 l1 L) is w3j(l1 l2 L) transposed times
            (−1)^(l1+l2+L)).
    """

    n_channels: int
    l_max: int
    types: tuple[CoupledPairType, ...]
    pools: tuple[Pool, ...]
    terms: tuple[np.ndarray, ...]
    sign: np.ndarray

    @property
    def n_basis(self) -> int:
        return self.sign.shape[0]

    def __deepcopy__(self, memo) -> ProductPlan:
        return self  # immutable: a copied module shares its plan (and the caches keyed by it)

    def __repr__(self) -> str:
        types = ", ".join(f"({t.l1},{t.l2})→{t.ls}×{t.n_pairs}" for t in self.types)
        return (
            f"ProductPlan(n_basis={self.n_basis}, n_channels={self.n_channels}, "
            f"l_max={self.l_max}, pool_sizes={[p.size for p in self.pools]}, types=[{types}])"
        )


# One object of a product, by its one-particle factors: () is 1, ((l, c),) is A_{c l} and
# ((l1, c1), (l2, c2)) the coupled pair, in canonical order.
_Operand = tuple[_Factor, ...]


def _canonical(f1: _Factor, f2: _Factor, L: int) -> tuple[_Operand, float]:
    """The coupled pair of f1, f2 → L with (l1, c1) ≤ (l2, c2), and the sign that costs."""
    if f1 <= f2:
        return (f1, f2), 1.0
    return (f2, f1), (-1.0) ** (f1[0] + f2[0] + L)


def _factorise(
    fn: ACEBasisFunction, channel: Callable[[tuple[str, int, int]], int]
) -> tuple[int, _Operand, _Operand, float]:
    """A basis function as (L, object a, object b, sign)."""
    f = [(l, channel((z, n, l))) for z, n, l in fn.factors]
    if fn.order == 1:
        return 0, (f[0],), (), 1.0
    if fn.order == 2:
        pair, sign = _canonical(f[0], f[1], 0)
        return 0, pair, (), sign
    if fn.order == 3:
        L = f[2][0]
        pair, sign = _canonical(f[0], f[1], L)
        return L, pair, (f[2],), sign
    (L,) = fn.coupling
    (pair_a, sign_a), (pair_b, sign_b) = _canonical(f[0], f[1], L), _canonical(f[2], f[3], L)
    return L, pair_a, pair_b, sign_a * sign_b


def _pair_types(
    products: list[tuple[int, _Operand, _Operand, float]],
) -> tuple[tuple[CoupledPairType, ...], dict[_Operand, tuple[int, int]]]:
    """The coupled pair types the products use, and each pair's (type index, u). Pairs are
    numbered in order of first use; a pair used at several L is one pair."""
    index: dict[tuple[int, int], dict[tuple[int, int], int]] = {}  # (l1, l2) → {(c1, c2): u}
    ls: dict[tuple[int, int], set[int]] = {}
    for L, a, b, _ in products:
        for (l1, c1), (l2, c2) in (pair for pair in (a, b) if len(pair) == 2):
            numbered = index.setdefault((l1, l2), {})
            numbered.setdefault((c1, c2), len(numbered))
            ls.setdefault((l1, l2), set()).add(L)
    types, where = [], {}
    for t, (l1, l2) in enumerate(sorted(index)):
        pairs = index[(l1, l2)]
        type_ls = tuple(sorted(ls[(l1, l2)]))
        coupling = np.concatenate(
            [o3.wigner_3j(l1, l2, L, dtype=torch.float64).numpy() for L in type_ls], axis=2
        )  # (2l1+1, 2l2+1, Σ_L (2L+1))
        channels = np.array(list(pairs), dtype=np.int64).reshape(-1, 2)  # (U, 2)
        types.append(CoupledPairType(l1, l2, type_ls, _frozen(channels), _frozen(coupling)))
        where.update({((l1, c1), (l2, c2)): (t, u) for (c1, c2), u in pairs.items()})
    return tuple(types), where


def _pools(
    n_channels: int, l_max: int, types: tuple[CoupledPairType, ...], max_L: int
) -> tuple[Pool, ...]:
    """The pool of every degree 0 … max_L: A, then 1, then the blocks of each type, by type."""
    pools = []
    for L in range(max_L + 1):
        n_a = n_channels if L <= l_max else 0
        start, blocks = n_a + int(L == 0), []
        for t, pair in enumerate(types):
            if L in pair.ls:
                blocks.append((t, start))
                start += pair.n_pairs
        pools.append(Pool(L, n_a, L == 0, tuple(blocks), start))
    return tuple(pools)


def _terms(
    products: list[tuple[int, _Operand, _Operand, float]],
    pools: tuple[Pool, ...],
    where: dict[_Operand, tuple[int, int]],
) -> tuple[np.ndarray, ...]:
    """Per L, the (K_L, 3) rows (k, a, b) of the products, objects numbered within pool L."""
    starts = [{t: start for t, start in pool.blocks} for pool in pools]

    def position(L: int, operand: _Operand) -> int:
        if not operand:
            return pools[L].n_a  # the constant 1
        if len(operand) == 1:
            return operand[0][1]  # A_{c L}: object c
        t, u = where[operand]
        return starts[L][t] + u

    rows: list[list[tuple[int, int, int]]] = [[] for _ in pools]
    for k, (L, a, b, _) in enumerate(products):
        rows[L].append((k, position(L, a), position(L, b)))
    return tuple(_frozen(np.array(r, dtype=np.int64).reshape(-1, 3)) for r in rows)


def product_plan(
    spec: list[ACEBasisFunction], elements: tuple[str, ...], n_max: int, l_max: int
) -> ProductPlan:
    """The :class:`ProductPlan` of a basis ``spec`` over neighbour ``elements``, radial indices
    n = 1 … n_max and degrees l = 0 … l_max. Deterministic: equal inputs give equal arrays."""
    zindex = {e: s for s, e in enumerate(elements)}
    products = [_factorise(fn, lambda f: zindex[f[0]] * n_max + f[1] - 1) for fn in spec]
    types, where = _pair_types(products)
    n_channels = len(elements) * n_max
    pools = _pools(n_channels, l_max, types, max(L for L, *_ in products))
    sign = np.array([s for *_, s in products], dtype=np.float64)
    return ProductPlan(
        n_channels, l_max, types, pools, _terms(products, pools, where), _frozen(sign)
    )


class _PairProducts(nn.Module):
    """The coupled pairs of one :class:`CoupledPairType` in torch, and their pull-back."""

    def __init__(self, pair: CoupledPairType):
        super().__init__()
        self.l1, self.l2, self.ls, self.widths = pair.l1, pair.l2, pair.ls, pair.widths
        self.register_buffer("first", torch.tensor(pair.channels[:, 0]), persistent=False)
        self.register_buffer("second", torch.tensor(pair.channels[:, 1]), persistent=False)
        w = torch.tensor(pair.coupling)  # (d1, d2, Σq)
        self.diagonal = pair.l1 == 0 or pair.l2 == 0
        if self.diagonal:
            # w3j(0 l l) and w3j(l 0 l) are multiples of the identity: keep the diagonal.
            square = w.reshape(w.shape[-1], w.shape[-1])
            if not torch.allclose(square, torch.diag(torch.diagonal(square)), atol=1e-12):
                raise RuntimeError(f"coupling ({pair.l1} {pair.l2}) is not diagonal")
            w = torch.diagonal(square).clone()  # (2l+1,)
        else:
            w = w.reshape(-1, w.shape[-1])  # (d1·d2, Σq)
        self.register_buffer("coupling", w, persistent=False)

    def extra_repr(self) -> str:
        return f"l1={self.l1}, l2={self.l2}, ls={self.ls}, n_pairs={self.first.numel()}"

    def couple(self, a_by_l: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(x1 (U, N, d1), x2 (U, N, d2), pairs (U, N, Σq)): the factors and coupled values.
        A plain method, not ``forward``: a module call's hook machinery costs more than the
        small products it would wrap."""
        x1 = a_by_l[self.l1].index_select(0, self.first)
        x2 = a_by_l[self.l2].index_select(0, self.second)
        if self.diagonal:
            return x1, x2, x1 * x2 * self.coupling
        # x1 ⊗ x2, then one contiguous matrix product with W (d1·d2, Σq).
        outer = (x1.unsqueeze(-1) * x2.unsqueeze(-2)).reshape(-1, self.coupling.shape[0])
        return x1, x2, (outer @ self.coupling).reshape(x1.shape[0], x1.shape[1], -1)

    def pull_back(
        self, g: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """∂E/∂x1 (U, N, d1) and ∂E/∂x2 (U, N, d2) from g = ∂E/∂pairs (U, N, Σq)."""
        if self.diagonal:
            gw = g * self.coupling
            g1, g2 = gw * x2, gw * x1
            # a degree-0 factor (one component) collects the sum over the other's m
            if self.l1 != self.l2:
                g1 = g1.sum(-1, keepdim=True) if self.l1 == 0 else g1
                g2 = g2.sum(-1, keepdim=True) if self.l2 == 0 else g2
            return g1, g2
        # y[u i, m1, m2] = Σ_q W[m1 m2 q] g[u, i, q]; then batched mat-vecs with x2 and x1.
        (n_pairs, n_atoms, d1), d2 = x1.shape, x2.shape[2]
        y = (g.reshape(-1, g.shape[-1]) @ self.coupling.T).reshape(-1, d1, d2)
        g1 = torch.bmm(y, x2.reshape(-1, d2, 1)).reshape(n_pairs, n_atoms, d1)
        g2 = torch.bmm(x1.reshape(-1, 1, d1), y).reshape(n_pairs, n_atoms, d2)
        return g1, g2


class _PoolTerms(nn.Module):
    """The basis functions of one degree L as torch index buffers (K_L,)."""

    def __init__(self, terms: np.ndarray, sign: np.ndarray):
        super().__init__()
        rows = torch.tensor(terms)  # (K_L, 3)
        self.register_buffer("basis", rows[:, 0].contiguous(), persistent=False)
        self.register_buffer("first", rows[:, 1].contiguous(), persistent=False)
        self.register_buffer("second", rows[:, 2].contiguous(), persistent=False)
        self.register_buffer("sign", torch.tensor(sign[terms[:, 0]]), persistent=False)

    def extra_repr(self) -> str:
        return f"n_terms={self.basis.numel()}"

    def forward(self, objects: torch.Tensor) -> torch.Tensor:
        """(K_L, N) values of the functions from the pool's objects (n_L, N, 2L+1)."""
        pairs = objects.index_select(0, self.first) * objects.index_select(0, self.second)
        return pairs.sum(-1) * self.sign[:, None]


def _per_species(m: torch.Tensor, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
    """(M_{s_i} x_i) for every atom i: m (S, r, c), x (c, N, d) → (r, N, d)."""
    n_species, rows = m.shape[0], m.shape[1]
    flat = x.reshape(x.shape[0], -1)
    if n_species == 1:
        return (m[0] @ flat).reshape(rows, *x.shape[1:])
    every = (m.reshape(-1, x.shape[0]) @ flat).reshape(n_species, rows, *x.shape[1:])
    return every[species, :, torch.arange(x.shape[1], device=x.device), :].transpose(0, 1)


class InvariantProducts(nn.Module):
    """Maps A (one tensor (channels, n_atoms, 2l+1) per l) to B (n_atoms, n_basis), by the
    public :attr:`plan` (a :class:`ProductPlan`); its index and coupling arrays are kept as
    non-persistent buffers, so ``.to(dtype/device)`` moves them."""

    def __init__(
        self, spec: list[ACEBasisFunction], elements: tuple[str, ...], n_max: int, l_max: int
    ):
        super().__init__()
        self.plan = product_plan(spec, elements, n_max, l_max)
        self.n_channels, self.l_max = self.plan.n_channels, l_max
        self.pairs = nn.ModuleList(_PairProducts(pair) for pair in self.plan.types)
        self.terms = nn.ModuleList(_PoolTerms(t, self.plan.sign) for t in self.plan.terms)
        order = np.concatenate([t[:, 0] for t in self.plan.terms])
        self.register_buffer(
            "spec_order", torch.tensor(np.argsort(order)), persistent=False
        )  # (n_basis,): row of each function in the per-L concatenation
        # Whether some function multiplies two coupled pairs (ν = 4); if not, the pairs×pairs
        # block of M_L is zero and skipped, which saves most of the readout's work.
        self._pairs_by_pairs = [
            bool(((t[:, 1:] >= pool.head).all(axis=1)).any())
            for t, pool in zip(self.plan.terms, self.plan.pools, strict=True)
        ]

    def _couple(
        self, a_by_l: list[torch.Tensor]
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[dict[int, torch.Tensor]]]:
        """Per type: the factors (x1, x2) and the coupled values by L, {L: (U, N, 2L+1)}."""
        factors, coupled = [], []
        for pair in self.pairs:
            x1, x2, values = pair.couple(a_by_l)
            factors.append((x1, x2))
            coupled.append(dict(zip(pair.ls, torch.split(values, pair.widths, -1), strict=True)))
        return factors, coupled

    def _objects(self, L: int, a_by_l: list[torch.Tensor], coupled) -> torch.Tensor:
        """The objects of degree L, (n_L, N, 2L+1), in the order of ``plan.pools[L]``."""
        pool, n_atoms = self.plan.pools[L], a_by_l[0].shape[1]
        parts = [a_by_l[L]] if pool.n_a else []
        if pool.has_one:
            parts.append(a_by_l[0].new_ones(1, n_atoms, 1))
        parts.extend(coupled[t][L] for t, _ in pool.blocks)
        return torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]

    def forward(self, a_by_l: list[torch.Tensor]) -> torch.Tensor:
        """B (n_atoms, n_basis) from A per l: a_by_l[l] has shape (channels, n_atoms, 2l+1)."""
        _, coupled = self._couple(a_by_l)
        columns = [
            terms(self._objects(L, a_by_l, coupled))
            for L, terms in enumerate(self.terms)
            if len(self.plan.terms[L])
        ]  # (K_L, N) each
        return torch.cat(columns).index_select(0, self.spec_order).transpose(0, 1)

    def _readout_adjoint(self, L: int, m: torch.Tensor, objects: torch.Tensor, species):
        """``M_L O_L`` per atom, (n_L, N, 2L+1), skipping the pairs×pairs block when it is
        zero."""
        head = self.plan.pools[L].head
        if self._pairs_by_pairs[L] or head == m.shape[1]:
            return _per_species(m, objects, species)
        return torch.cat(
            [
                _per_species(m[:, :head], objects, species),
                _per_species(m[:, head:, :head], objects[:head], species),
            ]
        )

    def fold(self, theta: torch.Tensor) -> dict[int, torch.Tensor]:
        """The readout θ (n_species, n_basis) folded into one symmetric matrix per degree L:
        ``M_L[s, a, b] = Σ_{k=(a,b)} sign_k θ_{s k}`` over the functions k = (L, a, b) of the
        plan, plus its transpose, (n_species, n_L, n_L) in θ's dtype and device. The site energy
        of an atom of species s with objects O_L (n_L, 2L+1) is then
        ``½ Σ_L Σ_m O_L·(M_L[s] O_L)``. Degrees without basis functions are left out. A pure
        function of θ: nothing is kept between calls."""
        folded = {}
        for L, terms in enumerate(self.terms):
            if not terms.basis.numel():
                continue
            n = self.plan.pools[L].size
            values = theta[:, terms.basis] * terms.sign.to(theta.dtype)  # (S, K_L)
            m = theta.new_zeros(theta.shape[0], n * n)
            m.index_add_(1, terms.first * n + terms.second, values)
            m = m.reshape(theta.shape[0], n, n)
            folded[L] = m + m.transpose(1, 2)
        return folded

    def energy_and_adjoint(
        self,
        a_by_l: list[torch.Tensor],
        theta: torch.Tensor,
        species: torch.Tensor,
        folded: dict[int, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Site energies ``E_i = Σ_k θ_{s_i k} B_ik`` (n_atoms,) and ``∂E/∂A`` per l
        (channels, n_atoms, 2l+1), in closed form.

        Args:
            a_by_l: A per l, (channels, n_atoms, 2l+1).
            theta: (n_species, n_basis) readout, columns in ``spec`` order.
            species: (n_atoms,) species index of each centre.
            folded: :meth:`fold` of ``theta``, where the caller keeps it (MD).
        """
        folded = self.fold(theta) if folded is None else folded
        factors, coupled = self._couple(a_by_l)
        energy = a_by_l[0].new_zeros(a_by_l[0].shape[1])
        adjoint = [torch.zeros_like(a) for a in a_by_l]
        pair_grads: list[dict[int, torch.Tensor]] = [{} for _ in self.pairs]
        for L, m in folded.items():  # every L at which a pair type is read has functions
            pool, objects = self.plan.pools[L], self._objects(L, a_by_l, coupled)
            grad = self._readout_adjoint(L, m, objects, species)  # (n_L, N, 2L+1) = M_L O_L
            energy = energy + 0.5 * (objects * grad).sum((0, 2))
            if pool.n_a:
                adjoint[L] = adjoint[L] + grad[: pool.n_a]
            for t, start in pool.blocks:
                pair_grads[t][L] = grad[start : start + self.plan.types[t].n_pairs]
        for pair, grads, (x1, x2) in zip(self.pairs, pair_grads, factors, strict=True):
            g1, g2 = pair.pull_back(torch.cat([grads[L] for L in pair.ls], dim=-1), x1, x2)
            adjoint[pair.l1] = adjoint[pair.l1].index_add(0, pair.first, g1)
            adjoint[pair.l2] = adjoint[pair.l2].index_add(0, pair.second, g2)
        return energy, adjoint
