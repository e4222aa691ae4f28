"""A fixed short-range repulsive prior: ZBL, switched off smoothly well inside the bond length."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from ase.data import atomic_numbers
from torch import nn

__all__ = ["ZBLRepulsion", "ZBLTables", "ZBL_C", "ZBL_D", "ZBL_SCREENING", "COULOMB"]

COULOMB = 14.399645  # e²/(4πε0), eV·Å
#: The universal screening function φ(x) = Σ_k C_k exp(−D_k x), x = r / a,
#: a = ZBL_SCREENING / (Z_i^0.23 + Z_j^0.23) Å.
ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)
ZBL_SCREENING = 0.46850  # Å


class ZBLTables(NamedTuple):
    """What an evaluation of :class:`ZBLRepulsion` outside torch reads (exports)."""

    z: np.ndarray  # (n_species,) float64 atomic numbers
    r_inner: np.ndarray  # (n_species, n_species) Å: the switch starts
    r_outer: np.ndarray  # (n_species, n_species) Å: the switch ends


def _check_switch(r_inner: torch.Tensor, r_outer: torch.Tensor) -> None:
    """Refuse switch radii (Å) unless finite with 0 < r_inner < r_outer for every pair."""
    if not bool(
        torch.isfinite(r_inner).all()
        & torch.isfinite(r_outer).all()
        & (r_inner > 0).all()
        & (r_outer > r_inner).all()
    ):
        raise ValueError(
            f"need finite 0 < r_inner < r_outer (Å), got {r_inner.tolist()} and {r_outer.tolist()}"
        )


def _atomic_numbers(elements) -> torch.Tensor:
    return torch.tensor([atomic_numbers[e] for e in elements], dtype=torch.float64)


class ZBLRepulsion(nn.Module):
    """Ziegler–Biersack–Littmark screened Coulomb pair energy times a quintic switch.

    The switch is 1 below ``r_inner`` and 0 above ``r_outer`` (per element pair, Å), with
    value, first and second derivative continuous. Input: distances (n_edges,) and species
    (n_edges,) of both ends; output: pair energies (n_edges,), eV.
    """

    def __init__(self, elements, r_inner: torch.Tensor, r_outer: torch.Tensor):
        super().__init__()
        self.register_buffer("z", _atomic_numbers(elements))
        r_inner = torch.as_tensor(r_inner, dtype=torch.float64)
        r_outer = torch.as_tensor(r_outer, dtype=torch.float64)
        _check_switch(r_inner, r_outer)
        self.register_buffer("r_inner", r_inner.clone())
        self.register_buffer("r_outer", r_outer.clone())

    def check_parameters(self, elements, prefix: str = "") -> None:
        """Check loaded buffers as the constructor makes them: ``z`` the atomic numbers of
        ``elements``, and the switch radii."""
        expected = _atomic_numbers(elements)
        if self.z.shape != expected.shape or not torch.equal(
            self.z.detach().cpu().double(), expected
        ):
            raise ValueError(
                f"tensor '{prefix}z' = {self.z.tolist()}; expected the atomic numbers "
                f"{expected.tolist()} of {list(elements)}"
            )
        try:
            _check_switch(
                self.r_inner.detach().cpu().double(), self.r_outer.detach().cpu().double()
            )
        except ValueError as err:
            raise ValueError(f"tensors '{prefix}r_inner' and '{prefix}r_outer': {err}") from None

    def kernel_tables(self) -> ZBLTables:
        """The atomic numbers and switch radii as float64 numpy arrays."""
        buffers = (self.z, self.r_inner, self.r_outer)
        return ZBLTables(*(t.detach().cpu().double().numpy().copy() for t in buffers))

    def forward(
        self, r: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor
    ) -> torch.Tensor:
        zi, zj = self.z[species_i], self.z[species_j]
        a = ZBL_SCREENING / (zi**0.23 + zj**0.23)
        x = r / a
        phi = sum(c * torch.exp(-d * x) for c, d in zip(ZBL_C, ZBL_D, strict=True))
        energy = COULOMB * zi * zj / r * phi
        r_in, r_out = self.r_inner[species_i, species_j], self.r_outer[species_i, species_j]
        t = ((r - r_in) / (r_out - r_in)).clamp(0.0, 1.0)
        switch = 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t**2)
        return energy * switch
