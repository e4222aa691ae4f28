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
        [torch.autograd.grad(spherical_harmonics(vg, 4)[:, k].sum(), vg)[0] for k in range(25)], dim=1
    )
    torch.testing.assert_close(ylm, spherical_harmonics(v, 4), rtol=0, atol=0)
    torch.testing.assert_close(grads, ref, rtol=1e-10, atol=1e-12)
