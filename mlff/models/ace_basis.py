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
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.linalg
import torch
from e3nn import o3

__all__ = ["ACEBasisFunction", "enumerate_ace_basis", "coupling_tensor"]


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

    @property
    def ns(self) -> tuple[int, ...]:
        return tuple(f[1] for f in self.factors)

    def __str__(self) -> str:
        body = " ⊗ ".join(f"{z}(n={n},l={l})" for z, n, l in self.factors)
        tail = f" →L={self.coupling[0]}" if self.coupling else ""
        return f"ν={self.order}: {body}{tail}"


@lru_cache(maxsize=None)
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
    factors: tuple[tuple[int, int, int], ...], candidates: list[tuple[int, ...]], rng: np.random.Generator
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
