"""A fixed short-range repulsive prior: ZBL, switched off smoothly well inside the bond length."""

from __future__ import annotations

import torch
from ase.data import atomic_numbers
from torch import nn

__all__ = ["ZBLRepulsion"]

_COULOMB = 14.399645  # e²/(4πε0), eV·Å
_ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
_ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)


class ZBLRepulsion(nn.Module):
    """Ziegler–Biersack–Littmark screened Coulomb pair energy times a quintic switch.

    The switch is 1 below ``r_inner`` and 0 above ``r_outer`` (per element pair, Å), with
    value, first and second derivative continuous. Input: distances (n_edges,) and species
    (n_edges,) of both ends; output: pair energies (n_edges,), eV.
    """

    def __init__(self, elements, r_inner: torch.Tensor, r_outer: torch.Tensor):
        super().__init__()
        z = torch.tensor([atomic_numbers[e] for e in elements], dtype=torch.float64)
        self.register_buffer("z", z)
        r_inner = torch.as_tensor(r_inner, dtype=torch.float64)
        r_outer = torch.as_tensor(r_outer, dtype=torch.float64)
        if bool((r_outer <= r_inner).any()) or bool((r_inner <= 0).any()):
            raise ValueError(f"need 0 < r_inner < r_outer, got {r_inner.tolist()} and {r_outer.tolist()}")
        self.register_buffer("r_inner", r_inner.clone())
        self.register_buffer("r_outer", r_outer.clone())

    def forward(self, r: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor) -> torch.Tensor:
        zi, zj = self.z[species_i], self.z[species_j]
        a = 0.46850 / (zi**0.23 + zj**0.23)
        x = r / a
        phi = sum(c * torch.exp(-d * x) for c, d in zip(_ZBL_C, _ZBL_D))
        energy = _COULOMB * zi * zj / r * phi
        r_in, r_out = self.r_inner[species_i, species_j], self.r_outer[species_i, species_j]
        t = ((r - r_in) / (r_out - r_in)).clamp(0.0, 1.0)
        switch = 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t**2)
        return energy * switch
