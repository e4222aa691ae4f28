"""e3nn real spherical harmonics and their gradients in closed form.

The gradient of a solid harmonic r^l Y_l is a harmonic polynomial of degree l − 1, hence a
linear combination of r^(l−1) Y_{l−1}. That linear map (2l+1, 3, 2l−1) is found once, exactly,
by least squares against autograd, and then

    ∂Y_lm/∂r_vec = (1/r) · (Σ_m' K_l[m, :, m'] Y_{l−1,m'}(r̂) − l · r̂ · Y_lm(r̂)).

This replaces three forward-mode passes through e3nn's polynomial code with one small matrix
product per l.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from e3nn import o3

__all__ = ["spherical_harmonics", "spherical_harmonics_with_gradients", "harmonic_gradient_dot"]


def spherical_harmonics(vectors: torch.Tensor, l_max: int) -> torch.Tensor:
    """Y_lm(r̂) for l ≤ l_max, e3nn's "component" normalisation: (n, 3) → (n, (l_max+1)²)."""
    return o3.spherical_harmonics(list(range(l_max + 1)), vectors, normalize=True, normalization="component")


@lru_cache(maxsize=None)
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
            [torch.autograd.grad(solid[:, m].sum(), v, retain_graph=True)[0] for m in range(2 * l + 1)], 1
        )  # (n, 2l+1, 3)
        lower = (r ** (l - 1) * ylm[:, (l - 1) ** 2 : l * l]).detach()  # (n, 2l-1)
        target = grads.detach().reshape(len(v), -1)
        sol = torch.linalg.lstsq(lower, target).solution  # (2l-1, (2l+1)·3)
        residual = (lower @ sol - target).abs().max()
        if residual > 1e-9:
            raise RuntimeError(f"gradient map of Y_{l} is off by {residual:.2e}")
        maps.append(sol.reshape(2 * l - 1, 2 * l + 1, 3).permute(1, 2, 0).contiguous())
    return tuple(maps)


def spherical_harmonics_with_gradients(vectors: torch.Tensor, l_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Y (n, (l_max+1)²) and ∂Y/∂r_vec (n, (l_max+1)², 3), 1/Å."""
    r = torch.linalg.vector_norm(vectors, dim=1, keepdim=True)  # (n, 1)
    unit = vectors / r
    ylm = spherical_harmonics(vectors, l_max)
    grads = [torch.zeros(len(vectors), 1, 3, dtype=vectors.dtype, device=vectors.device)]
    for l, kmap in enumerate(_gradient_maps(l_max)[1:], start=1):
        kmap = kmap.to(dtype=vectors.dtype, device=vectors.device)  # (2l+1, 3, 2l-1)
        lower = ylm[:, (l - 1) ** 2 : l * l]  # (n, 2l-1)
        solid = torch.einsum("mxp,np->nmx", kmap, lower)
        grads.append((solid - l * ylm[:, l * l : (l + 1) ** 2, None] * unit[:, None, :]) / r[:, :, None])
    return ylm, torch.cat(grads, dim=1)


@lru_cache(maxsize=None)
def _stacked_gradient_map(l_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All gradient maps as one (n_lm, 3·l_max²) matrix, and l of each (l, m) (n_lm,)."""
    n_lm, n_low = (l_max + 1) ** 2, l_max**2
    big = torch.zeros(n_lm, 3, max(n_low, 1), dtype=torch.float64)
    for l, kmap in enumerate(_gradient_maps(l_max)[1:], start=1):
        big[l * l : (l + 1) ** 2, :, (l - 1) ** 2 : l * l] = kmap
    degree = torch.cat([torch.full((2 * l + 1,), float(l), dtype=torch.float64) for l in range(l_max + 1)])
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
