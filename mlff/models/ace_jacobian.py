"""∂B/∂A of the ACE invariants, per basis function and factor, for design-matrix assembly.

Fitting needs the Jacobian of every basis function with respect to every edge vector. The
invariants are polynomials in the atomic basis A, so ∂B_k/∂A is computed in closed form: for a
function with factors x_1 … x_ν contracted by the coupling tensor C, the derivative with
respect to factor t is C contracted with all the other factors. Functions are grouped by their
l-signature so each group is a handful of einsums.

The result is a list per l of (function index k, channel c, values (n_q, n_atoms, 2l+1)):
``∂B_{i k}/∂A_{i, c, l, m} = values[q, i, m]``; a factor repeated in a product gives several
entries, which add up.
"""

from __future__ import annotations

import torch
from torch import nn

from mlff.models.ace_basis import ACEBasisFunction, coupling_tensor

__all__ = ["InvariantGradients"]


def _outer(xs: list[torch.Tensor]) -> torch.Tensor:
    """(K, N, d_1·d_2·…) outer product over the last axis of (K, N, d_t) factors."""
    out = xs[0]
    for x in xs[1:]:
        out = (out.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)
    return out


class _Group(nn.Module):
    """The functions of one l-signature ``ls`` and coupling, as buffers: ``basis`` (K,) their
    indices, ``channels`` (ν, K) the channel of each factor, ``coupling`` (d_1, …, d_ν) the
    coupling tensor C they share."""

    def __init__(self, ls: tuple[int, ...], coupling: tuple[int, ...], basis, channels):
        super().__init__()
        self.ls = ls
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.long), persistent=False)
        self.register_buffer(
            "channels", torch.tensor(channels, dtype=torch.long).t().contiguous(), persistent=False
        )
        self.register_buffer("coupling", coupling_tensor(ls, coupling).clone(), persistent=False)


class InvariantGradients(nn.Module):
    """B and ∂B/∂A from A (a list per l of (channels, n_atoms, 2l+1) tensors)."""

    def __init__(
        self, spec: list[ACEBasisFunction], elements: tuple[str, ...], n_max: int, l_max: int
    ):
        super().__init__()
        zindex = {e: s for s, e in enumerate(elements)}
        self.l_max = l_max
        self.n_basis = len(spec)
        members: dict[tuple, list[int]] = {}
        for k, f in enumerate(spec):
            members.setdefault((f.ls, f.coupling), []).append(k)
        self.groups = nn.ModuleList(
            _Group(
                ls,
                coupling,
                ks,
                [[zindex[z] * n_max + n - 1 for z, n, _ in spec[k].factors] for k in ks],
            )
            for (ls, coupling), ks in members.items()
        )

    def forward(self, a_by_l: list[torch.Tensor]):
        """Returns B (n_atoms, n_basis) and, per l, (k (n_q,), c (n_q,), values (n_q, N, 2l+1))."""
        n_atoms = a_by_l[0].shape[1]
        basis = a_by_l[0].new_zeros(self.n_basis, n_atoms)
        pieces: list[list[tuple]] = [[] for _ in range(self.l_max + 1)]
        for group in self.groups:
            ls, ks, chans, w = group.ls, group.basis, group.channels, group.coupling
            xs = [a_by_l[l].index_select(0, chans[t]) for t, l in enumerate(ls)]  # (K, N, 2l+1)
            order = len(ls)
            if order == 1:
                basis[ks] = xs[0][:, :, 0]
                pieces[0].append((ks, chans[0], torch.ones_like(xs[0])))
                continue
            basis[ks] = (_outer(xs) @ w.reshape(-1, 1))[..., 0]
            for t in range(order):
                others = [xs[s] for s in range(order) if s != t]
                # C with factor t moved last: (Π_{s≠t} d_s, d_t)
                moved = w.movedim(t, -1).reshape(-1, w.shape[t])
                pieces[ls[t]].append((ks, chans[t], _outer(others) @ moved))
        per_l = []
        for l in range(self.l_max + 1):
            if pieces[l]:
                per_l.append(tuple(torch.cat([p[i] for p in pieces[l]]) for i in range(3)))
            else:
                per_l.append(None)
        return basis.transpose(0, 1), per_l
