import numpy as np
import torch

from mlff.models.harmonics import spherical_harmonics, spherical_harmonics_with_gradients


def test_closed_form_gradients_match_autograd_including_axis_aligned_vectors():
    gen = torch.Generator().manual_seed(4)
    v = torch.randn(300, 3, generator=gen, dtype=torch.float64) * 2.5
    v[:20, :2] = 0.0  # along z
    v[20:40, 1:] = 0.0  # along x
    ylm, grads = spherical_harmonics_with_gradients(v, 4)
    vg = v.clone().requires_grad_(True)
    ref = torch.stack(
        [torch.autograd.grad(spherical_harmonics(vg, 4)[:, k].sum(), vg)[0] for k in range(25)],
        dim=1,
    )
    torch.testing.assert_close(ylm, spherical_harmonics(v, 4), rtol=0, atol=0)
    torch.testing.assert_close(grads, ref, rtol=1e-10, atol=1e-12)


def test_monomial_expansion_reproduces_e3nn_and_its_gradient():
    from mlff.models.harmonics import monomial_expansion, spherical_harmonics_with_gradients

    l_max = 5
    exps, starts, coef, lower = monomial_expansion(l_max)
    v = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2.0
    ylm, dylm = spherical_harmonics_with_gradients(v, l_max)
    r = v.norm(dim=1, keepdim=True)
    u = (v / r).numpy()
    mono = np.prod(u[:, None, :] ** exps[None], axis=2)  # (n, n_mono)
    np.testing.assert_allclose(mono @ coef.T, ylm.numpy(), rtol=0, atol=1e-12)
    # ∇Y = (∇P(r̂) − l Y r̂) / r with P = r^l Y, the monomials' derivatives read through `lower`.
    grad_p = np.stack(
        [(coef * exps[:, d]) @ mono[:, lower[:, d]].T for d in range(3)], axis=-1
    )  # (n_lm, n, 3)
    degree = np.concatenate([[l] * (2 * l + 1) for l in range(l_max + 1)])
    expected = (
        grad_p.transpose(1, 0, 2) - degree[None, :, None] * ylm.numpy()[:, :, None] * u[:, None, :]
    ) / r.numpy()[:, :, None]
    np.testing.assert_allclose(expected, dylm.numpy(), rtol=0, atol=1e-10)
    assert starts[-1] == len(exps) == sum((l + 1) * (l + 2) // 2 for l in range(l_max + 1))
