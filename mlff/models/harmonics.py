"""e3nn real spherical harmonics and their gradients in closed form.

The gradient of a solid harmonic r^l Y_l is a harmonic polynomial of degree l − 1, hence a
linear combination of r^(l−1) Y_{l−1}. That linear map (2l+1, 3, 2l−1) is found once, exactly,
by least squares against autograd, and then

    ∂Y_lm/∂r_vec = (1/r) · (Σ_m' K_l[m, :, m'] Y_{l−1,m'}(r̂) − l · r̂ · Y_lm(r̂)).

This replaces three forward-mode passes through e3nn's polynomial code with one small matrix
product per l.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from e3nn import o3

__all__ = [
    "spherical_harmonics",
    "spherical_harmonics_with_gradients",
    "harmonic_gradient_dot",
    "monomial_expansion",
]


def spherical_harmonics(vectors: torch.Tensor, l_max: int) -> torch.Tensor:
    """Y_lm(r̂) for l ≤ l_max, e3nn's "component" normalisation: (n, 3) → (n, (l_max+1)²)."""
    return o3.spherical_harmonics(
        list(range(l_max + 1)), vectors, normalize=True, normalization="component"
    )


@cache
@torch.enable_grad()
def _gradient_maps(l_max: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(200, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    r = v.norm(dim=1, keepdim=True)
    ylm = spherical_harmonics(v, l_max)
    maps = [torch.zeros(1, 3, 1, dtype=torch.float64)]  # l = 0: constant
    for l in range(1, l_max + 1):
        solid = r**l * ylm[:, l * l : (l + 1) ** 2]  # (n, 2l+1)
        grads = torch.stack(
            [
                torch.autograd.grad(solid[:, m].sum(), v, retain_graph=True)[0]
                for m in range(2 * l + 1)
            ],
            1,
        )  # (n, 2l+1, 3)
        lower = (r ** (l - 1) * ylm[:, (l - 1) ** 2 : l * l]).detach()  # (n, 2l-1)
        target = grads.detach().reshape(len(v), -1)
        sol = torch.linalg.lstsq(lower, target).solution  # (2l-1, (2l+1)·3)
        residual = (lower @ sol - target).abs().max()
        if residual > 1e-9:
            raise RuntimeError(f"gradient map of Y_{l} is off by {residual:.2e}")
        maps.append(sol.reshape(2 * l - 1, 2 * l + 1, 3).permute(1, 2, 0).contiguous())
    return tuple(maps)


def spherical_harmonics_with_gradients(
    vectors: torch.Tensor, l_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Y (n, (l_max+1)²) and ∂Y/∂r_vec (n, (l_max+1)², 3), 1/Å."""
    r = torch.linalg.vector_norm(vectors, dim=1, keepdim=True)  # (n, 1)
    unit = vectors / r
    ylm = spherical_harmonics(vectors, l_max)
    grads = [torch.zeros(len(vectors), 1, 3, dtype=vectors.dtype, device=vectors.device)]
    for l, kmap in enumerate(_gradient_maps(l_max)[1:], start=1):
        kmap = kmap.to(dtype=vectors.dtype, device=vectors.device)  # (2l+1, 3, 2l-1)
        lower = ylm[:, (l - 1) ** 2 : l * l]  # (n, 2l-1)
        solid = torch.einsum("mxp,np->nmx", kmap, lower)
        grads.append(
            (solid - l * ylm[:, l * l : (l + 1) ** 2, None] * unit[:, None, :]) / r[:, :, None]
        )
    return ylm, torch.cat(grads, dim=1)


@cache
def _stacked_gradient_map(l_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All gradient maps as one (n_lm, 3·l_max²) matrix, and l of each (l, m) (n_lm,)."""
    n_lm, n_low = (l_max + 1) ** 2, l_max**2
    big = torch.zeros(n_lm, 3, max(n_low, 1), dtype=torch.float64)
    for l, kmap in enumerate(_gradient_maps(l_max)[1:], start=1):
        big[l * l : (l + 1) ** 2, :, (l - 1) ** 2 : l * l] = kmap
    degree = torch.cat(
        [torch.full((2 * l + 1,), float(l), dtype=torch.float64) for l in range(l_max + 1)]
    )
    return big.reshape(n_lm, -1), degree


def harmonic_gradient_dot(
    vectors: torch.Tensor, r: torch.Tensor, ylm: torch.Tensor, weights: torch.Tensor, l_max: int
) -> torch.Tensor:
    """``Σ_lm weights[e, lm] ∂Y_lm(r̂_e)/∂r_e`` (n_edges, 3), 1/Å, without forming ∂Y.

    Args: vectors (n, 3) Å, r (n,) their lengths, ylm (n, n_lm) from :func:`spherical_harmonics`,
    weights (n, n_lm).
    """
    big, degree = _stacked_gradient_map(l_max)
    big = big.to(dtype=vectors.dtype, device=vectors.device)
    degree = degree.to(dtype=vectors.dtype, device=vectors.device)
    n_low = max(l_max**2, 1)
    lower = (weights @ big).reshape(-1, 3, n_low)  # Σ_m w[lm] K_l[m, x, m']
    tangential = (lower * ylm[:, None, :n_low]).sum(-1)  # (n, 3)
    radial = (weights * ylm * degree).sum(-1)  # Σ l w Y
    return (tangential - radial[:, None] * vectors / r[:, None]) / r[:, None]


def monomial_expansion(l_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Y_lm(r̂) as combinations of the monomials x^a y^b z^c (a + b + c = l) of the unit vector,
    for compiled kernels. Found once by least squares against e3nn and checked to 1e-10.

    Returns exps (n_mono, 3) int64, degree_start (l_max+2,) int64, coef (n_lm, n_mono) with
    Y_lm = Σ_k coef[lm, k] · mono_k over the monomials of degree l, and for the gradient the
    index of ∂mono_k/∂x_d's monomial (n_mono, 3) (0 where the exponent is 0).
    """
    exps, starts = [], []
    for l in range(l_max + 1):
        starts.append(len(exps))
        for a in range(l, -1, -1):
            for b in range(l - a, -1, -1):
                exps.append((a, b, l - a - b))
    starts.append(len(exps))
    exps_arr = np.array(exps, dtype=np.int64)
    index = {e: k for k, e in enumerate(exps)}
    lower = np.zeros((len(exps), 3), dtype=np.int64)
    for k, e in enumerate(exps):
        for d in range(3):
            if e[d]:
                low = list(e)
                low[d] -= 1
                lower[k, d] = index[tuple(low)]
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(400, 3, generator=gen, dtype=torch.float64)
    u = (v / v.norm(dim=1, keepdim=True)).numpy()
    ylm = spherical_harmonics(torch.from_numpy(u), l_max).numpy()  # (n, n_lm)
    coef = np.zeros(((l_max + 1) ** 2, len(exps)))
    for l in range(l_max + 1):
        sl = slice(starts[l], starts[l + 1])
        mono = np.prod(u[:, None, :] ** exps_arr[None, sl, :], axis=2)  # (n, n_mono_l)
        sol, *_ = np.linalg.lstsq(mono, ylm[:, l * l : (l + 1) ** 2], rcond=None)
        residual = np.abs(mono @ sol - ylm[:, l * l : (l + 1) ** 2]).max()
        if residual > 1e-10:
            raise RuntimeError(
                f"Y_{l} is not a degree-{l} polynomial of r̂ (residual {residual:.1e})"
            )
        coef[l * l : (l + 1) ** 2, sl] = sol.T
    coef[np.abs(coef) < 1e-14] = 0.0
    return exps_arr, np.array(starts, dtype=np.int64), coef, lower
