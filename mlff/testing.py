"""Checks that every mlff model and calculator must pass, public so users can run them too.

Each helper raises ``AssertionError`` with the measured error when the check fails.
:class:`HarmonicCrystal` is a calculator whose MD behaviour is known exactly, for testing MD
tools.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from mlff.graph import build_graph
from mlff.protocol import LinearSiteModel

__all__ = [
    "assert_forces_are_gradients",
    "assert_stress_is_strain_derivative",
    "assert_invariant",
    "random_linear_parameters",
    "HarmonicCrystal",
]


def _relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    scale = max(float(np.abs(reference).max()), 1e-3)
    return float(np.abs(value - reference).max()) / scale


def assert_forces_are_gradients(atoms: Atoms, eps: float = 1e-4, rtol: float = 1e-6) -> float:
    """Forces equal −∇E by central finite differences; returns the relative error.

    The error is max|F − F_fd| / max(max|F_fd|, 1e-3 eV/Å).
    """
    forces = atoms.get_forces()
    reference = calculate_numerical_forces(atoms, eps=eps)
    err = _relative_error(forces, reference)
    assert err <= rtol, f"forces differ from −∇E: relative error {err:.3e} > {rtol:.1e}"
    return err


def assert_stress_is_strain_derivative(
    atoms: Atoms, eps: float = 1e-5, rtol: float = 1e-6
) -> float:
    """Stress equals (1/V) ∂E/∂ε by central finite differences; returns the relative error."""
    stress = atoms.get_stress(voigt=True)
    reference = calculate_numerical_stress(atoms, eps=eps, voigt=True)
    err = _relative_error(stress, reference)
    assert err <= rtol, (
        f"stress differs from the strain derivative: relative error {err:.3e} > {rtol:.1e}"
    )
    return err


def assert_invariant(
    atoms: Atoms,
    transformed: Atoms,
    rotation: np.ndarray | None = None,
    permutation: np.ndarray | None = None,
    atol: float = 1e-9,
) -> None:
    """``transformed`` is ``atoms`` rotated (x → R x), permuted (new atom k = old atom p[k]) or
    moved; energy must be unchanged, forces must rotate and permute, stress must rotate.
    Both Atoms must carry a calculator.
    """
    rot = np.eye(3) if rotation is None else np.asarray(rotation)
    perm = np.arange(len(atoms)) if permutation is None else np.asarray(permutation)
    e0, e1 = atoms.get_potential_energy(), transformed.get_potential_energy()
    assert abs(e0 - e1) <= atol * max(1.0, len(atoms)), f"energy changed: {e0!r} → {e1!r}"
    f0, f1 = atoms.get_forces(), transformed.get_forces()
    expected = f0[perm] @ rot.T
    err = np.abs(f1 - expected).max()
    assert err <= atol * 10, f"forces do not transform covariantly: max error {err:.3e} eV/Å"
    if atoms.pbc.all():
        s0 = atoms.get_stress(voigt=False)
        s1 = transformed.get_stress(voigt=False)
        err = np.abs(s1 - rot @ s0 @ rot.T).max()
        assert err <= atol * 10, f"stress does not rotate as a tensor: max error {err:.3e} eV/Å³"


def random_linear_parameters(
    model: LinearSiteModel, atoms: Atoms, energy_scale: float = 0.1, seed: int = 0
) -> torch.Tensor:
    """Random θ whose terms each move site energies by about ``energy_scale`` / sqrt(P) eV;
    sets and returns it.

    Column magnitudes are measured on ``atoms`` and on a copy rattled by 0.1 Å, so that
    columns a symmetric structure happens to suppress do not get huge weights. Columns unused
    by either get unit-scale entries.
    """
    rattled = atoms.copy()
    rattled.rattle(0.1, seed=seed)
    rms = None
    for structure in (atoms, rattled):
        graph = build_graph(structure, model.cutoff, dtype=model.dtype, device=model.device)
        with torch.no_grad():
            basis = model.site_basis(graph)  # (n_atoms, P)
        col = basis.pow(2).mean(0).sqrt().cpu()
        rms = col if rms is None else torch.maximum(rms, col)
    scale = torch.where(rms > 0, 1.0 / rms.clamp_min(1e-300), torch.ones_like(rms))
    gen = torch.Generator().manual_seed(seed)
    n = model.length_basis()
    theta = (
        energy_scale / max(n, 1) ** 0.5 * torch.randn(n, generator=gen, dtype=torch.float64) * scale
    )
    model.set_linear_parameters(theta)
    return theta


class HarmonicCrystal(Calculator):
    """A harmonic (Einstein) crystal: every atom on its own spring to a fixed site,
    E = ½ k Σ_i |r_i − s_i|² (eV), F_i = −k (r_i − s_i).

    Known exactly: each atom is a 3D oscillator of angular frequency ω = √(k/m); a canonical
    ensemble has ⟨E_pot⟩ = (3/2) N k_B T; velocity Verlet conserves a shadow energy, so the total
    energy oscillates (by (ωΔt)²/4 times the oscillating part of E_pot) without drifting. The
    energy does not depend on the cell, so the stress is zero and the pressure is the ideal-gas
    term alone. ASE's MD does not wrap positions, so r − s needs no minimum image.

    Args:
        sites: (n_atoms, 3) Å, or an ``Atoms`` whose positions are the sites.
        k: spring constant, eV/Å².
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, sites, k: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.sites = np.array(
            sites.positions if isinstance(sites, Atoms) else sites, dtype=np.float64
        )
        if self.sites.ndim != 2 or self.sites.shape[1] != 3:
            raise ValueError(f"sites must have shape (n_atoms, 3), got {self.sites.shape}")
        if not (np.isfinite(k) and k > 0):
            raise ValueError(f"k must be a positive number of eV/Å², got {k!r}")
        self.k = float(k)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions - self.sites  # (n_atoms, 3)
        if "stress" in properties and not self.atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a 3D-periodic cell")
        energies = 0.5 * self.k * np.einsum("ij,ij->i", d, d)
        energy = float(energies.sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": energies,
            "forces": -self.k * d,
        }
        if self.atoms.pbc.all():
            self.results["stress"] = np.zeros(6)
