"""The ACE basis specification: which products of one-particle functions, and how coupled.

A one-particle function is φ_{z n l m}(r_ij) = δ(z_j = z) R_n(r_ij) Y_lm(r̂_ij); its pooled
form is the atomic basis A_{i, z n l m} = Σ_j φ. A basis function of correlation order ν is a
product of ν factors (z, n, l) contracted to a rotation invariant:

* ν = 1: l = 0;
* ν = 2: l1 = l2, contracted by Σ_m (as the 3j symbol (l l 0));
* ν = 3: (l1, l2, l3) coupled by the Wigner 3j symbol;
* ν = 4: (l1, l2) → L and (l3, l4) → L, contracted over M.

Only even Σ l is kept, so every function is invariant under rotations *and* inversion.
Products of repeated factors are checked for linear dependence numerically and pruned.
The total-degree rule keeps Σ_t (n_t + w_L · l_t) ≤ max_degree[ν].
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.linalg
import torch
from e3nn import o3

__all__ = [
    "ACEBasisFunction",
    "basis_size_bound",
    "coupling_tensor",
    "enumerate_ace_basis",
    "enumeration_size",
]


@dataclass(frozen=True)
class ACEBasisFunction:
    """One invariant: factors ((element, n, l), …) sorted, and the intermediate coupling.

    ``coupling`` is () for ν ≤ 3 and (L,) for ν = 4. ``degree`` is Σ (n + w_L l).
    """

    factors: tuple[tuple[str, int, int], ...]
    coupling: tuple[int, ...]
    degree: float

    @property
    def order(self) -> int:
        return len(self.factors)

    @property
    def ls(self) -> tuple[int, ...]:
        return tuple(f[2] for f in self.factors)

    def __str__(self) -> str:
        body = " ⊗ ".join(f"{z}(n={n},l={l})" for z, n, l in self.factors)
        tail = f" →L={self.coupling[0]}" if self.coupling else ""
        return f"ν={self.order}: {body}{tail}"


@cache
def coupling_tensor(ls: tuple[int, ...], coupling: tuple[int, ...]) -> torch.Tensor:
    """Dense float64 coupling tensor for one l-signature.

    ν=1: (1,); ν=2: (d, d) = w3j(l l 0), ∝ identity; ν=3: w3j (d1, d2, d3); ν=4: (d1, d2, d3, d4),
    the contraction Σ_M w3j(l1 l2 L)_{ab M} w3j(l3 l4 L)_{cd M}.
    """
    if len(ls) == 1:
        return torch.ones(1, dtype=torch.float64)
    if len(ls) == 2:
        return o3.wigner_3j(ls[0], ls[1], 0, dtype=torch.float64)[:, :, 0]
    if len(ls) == 3:
        return o3.wigner_3j(*ls, dtype=torch.float64)
    if len(ls) == 4:
        (L,) = coupling
        c12 = o3.wigner_3j(ls[0], ls[1], L, dtype=torch.float64)
        c34 = o3.wigner_3j(ls[2], ls[3], L, dtype=torch.float64)
        return torch.einsum("abM,cdM->abcd", c12, c34)
    raise ValueError(f"correlation order {len(ls)} is not supported; use 1 to 4")


def _candidate_couplings(ls: tuple[int, ...]) -> list[tuple[int, ...]]:
    if sum(ls) % 2:
        return []
    if len(ls) == 1:
        return [()] if ls[0] == 0 else []
    if len(ls) == 2:
        return [()] if ls[0] == ls[1] else []
    if len(ls) == 3:
        l1, l2, l3 = ls
        return [()] if abs(l1 - l2) <= l3 <= l1 + l2 else []
    l1, l2, l3, l4 = ls
    lo = max(abs(l1 - l2), abs(l3 - l4))
    hi = min(l1 + l2, l3 + l4)
    return [(L,) for L in range(lo, hi + 1)]


def _independent_couplings(
    factors: tuple[tuple[int, int, int], ...],
    candidates: list[tuple[int, ...]],
    rng: np.random.Generator,
) -> list[tuple[int, ...]]:
    """Keep a linearly independent subset of the candidate couplings of one factor multiset.

    Identical factors share one random vector, so symmetries that make couplings vanish or
    coincide show up as rank loss of the sampled values.
    """
    distinct = sorted(set(factors))
    n_samples = 2 * len(candidates) + 4
    values = np.empty((n_samples, len(candidates)))
    for s in range(n_samples):
        vecs = {f: torch.from_numpy(rng.standard_normal(2 * f[2] + 1)) for f in distinct}
        xs = [vecs[f] for f in factors]
        for c, coupling in enumerate(candidates):
            tensor = coupling_tensor(tuple(f[2] for f in factors), coupling)
            for x in reversed(xs):
                tensor = tensor @ x
            values[s, c] = float(tensor)
    scale = np.abs(values).max()
    if scale == 0.0:
        return []
    _, r, piv = scipy.linalg.qr(values / scale, pivoting=True, mode="economic")
    diag = np.abs(np.diag(r))
    rank = int((diag > 1e-8 * max(diag[0], 1e-300)).sum())
    return [candidates[k] for k in sorted(piv[:rank])]


def enumerate_ace_basis(
    elements: tuple[str, ...],
    n_max: int,
    l_max: int,
    max_degree: dict[int, float],
    w_l: float = 1.5,
) -> list[ACEBasisFunction]:
    """All basis functions allowed by the total-degree rule, grouped by l-signature.

    Args:
        elements: neighbour elements (one factor channel per element).
        n_max: radial functions n = 1 … n_max.
        l_max: largest spherical-harmonic degree.
        max_degree: correlation order ν → largest total degree Σ (n + w_L l).
        w_l: weight of l in the degree.
    """
    rng = np.random.default_rng(0)
    one_particle = [
        (z, n, l)
        for z in range(len(elements))
        for n in range(1, n_max + 1)
        for l in range(l_max + 1)
        if n + w_l * l <= max(max_degree.values()) + 1e-9
    ]
    degree = {f: f[1] + w_l * f[2] for f in one_particle}
    out: list[ACEBasisFunction] = []
    for order in sorted(max_degree):
        limit = max_degree[order] + 1e-9
        groups: dict[tuple, list[ACEBasisFunction]] = defaultdict(list)
        for factors in itertools.combinations_with_replacement(one_particle, order):
            total = sum(degree[f] for f in factors)
            if total > limit:
                continue
            ls = tuple(f[2] for f in factors)
            candidates = _candidate_couplings(ls)
            if not candidates:
                continue
            if order >= 3 and len(set(factors)) < order:
                candidates = _independent_couplings(factors, candidates, rng)
            named = tuple((elements[z], n, l) for z, n, l in factors)
            for coupling in candidates:
                groups[(ls, coupling)].append(ACEBasisFunction(named, coupling, total))
        for key in sorted(groups):
            out.extend(groups[key])
    return out


def _one_particle_degrees(n_max: int, l_max: int, w_l: float, top: float) -> list[tuple[int, int]]:
    """(n, l) of the one-particle functions of one element that :func:`enumerate_ace_basis`
    keeps."""
    return [
        (n, l) for n in range(1, n_max + 1) for l in range(l_max + 1) if n + w_l * l <= top + 1e-9
    ]


def enumeration_size(
    n_elements: int, n_max: int, l_max: int, max_degree: dict[int, float], w_l: float = 1.5
) -> int:
    """How many factor multisets :func:`enumerate_ace_basis` walks through (each costs about
    a microsecond of Python, before any coupling is checked), without walking them."""
    m = n_elements * len(_one_particle_degrees(n_max, l_max, w_l, max(max_degree.values())))
    return sum(math.comb(m + order - 1, order) for order in max_degree)


def basis_size_bound(
    n_elements: int, n_max: int, l_max: int, max_degree: dict[int, float], w_l: float = 1.5
) -> int:
    """An upper bound on ``len(enumerate_ace_basis(...))`` for ``w_l >= 0``, in about a millisecond.

    Factor multisets are counted by (Σn, Σl) (the degree is Σn + w_l·Σl); those within their
    order's degree with even Σl are kept, order 1 only at Σl = 0, and an order-4 multiset
    counts once per intermediate L ≤ Σl/2.
    """
    top_order = max(max_degree)
    # counts[k, sn, sl]: multisets of k factors with Σn = sn and Σl = sl (floats: only a bound).
    counts = np.zeros((top_order + 1, top_order * n_max + 1, top_order * l_max + 1))
    counts[0, 0, 0] = 1.0
    for n, l in _one_particle_degrees(n_max, l_max, w_l, max(max_degree.values())):
        before = counts.copy()
        for k in range(1, top_order + 1):
            for j in range(1, k + 1):  # j copies of (n, l), from any of the n_elements channels
                ways = math.comb(n_elements + j - 1, j)
                dn, dl = j * n, j * l
                counts[k, dn:, dl:] += (
                    ways * before[k - j, : counts.shape[1] - dn, : counts.shape[2] - dl]
                )
    sn, sl = np.meshgrid(np.arange(counts.shape[1]), np.arange(counts.shape[2]), indexing="ij")
    total = 0.0
    for order, limit in max_degree.items():
        keep = (sn + w_l * sl <= limit + 1e-6) & (sl % 2 == 0) & ((sl == 0) if order == 1 else True)
        couplings = sl // 2 + 1 if order == 4 else 1
        total += float((counts[order] * keep * couplings).sum())
    return math.ceil(total)
