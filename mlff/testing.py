"""Checks that every mlff model and calculator must pass, public so users can run them too.

Each helper raises ``AssertionError`` with the measured error when the check fails.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from mlff.graph import build_graph
from mlff.protocol import LinearSiteModel

__all__ = [
    "assert_forces_are_gradients",
    "assert_stress_is_strain_derivative",
    "assert_invariant",
    "random_linear_parameters",
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


def assert_stress_is_strain_derivative(atoms: Atoms, eps: float = 1e-5, rtol: float = 1e-6) -> float:
    """Stress equals (1/V) ∂E/∂ε by central finite differences; returns the relative error."""
    stress = atoms.get_stress(voigt=True)
    reference = calculate_numerical_stress(atoms, eps=eps, voigt=True)
    err = _relative_error(stress, reference)
    assert err <= rtol, f"stress differs from the strain derivative: relative error {err:.3e} > {rtol:.1e}"
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
    theta = energy_scale / max(n, 1) ** 0.5 * torch.randn(n, generator=gen, dtype=torch.float64) * scale
    model.set_linear_parameters(theta)
    return theta
