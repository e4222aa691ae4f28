"""``device="cuda"``: the torch path on a GPU against the CPU, in both dtypes, through ASE MD.

Every test here skips without a CUDA device (CI has none)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet
from helpers import STRUCTURES, make_stack

from mlff import StackedCalculator
from mlff.testing import assert_forces_are_gradients, assert_stress_is_strain_derivative

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_cuda_float64_matches_cpu_kernels(name):
    atoms = STRUCTURES[name]()
    atoms.calc = StackedCalculator(make_stack())  # CPU, numba kernels
    cpu = (
        atoms.get_potential_energy(),
        atoms.get_forces().copy(),
        atoms.get_potential_energies().copy(),
    )
    atoms.calc = StackedCalculator(make_stack(), device="cuda")
    assert atoms.calc.evaluator.path == "eager"
    assert atoms.get_potential_energy() == pytest.approx(cpu[0], abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), cpu[1], atol=1e-10)
    np.testing.assert_allclose(atoms.get_potential_energies(), cpu[2], atol=1e-10)


def test_cuda_float32_is_close_to_float64():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=7)
    atoms.calc = StackedCalculator(make_stack(), device="cuda")
    f64, s64 = atoms.get_forces().copy(), atoms.get_stress().copy()
    atoms.calc = StackedCalculator(make_stack(), device="cuda", dtype=torch.float32)
    f32, s32 = atoms.get_forces(), atoms.get_stress()
    assert f32.dtype == np.float64  # ASE arrays stay float64 whatever the model computes in
    assert np.sqrt(np.mean((f32 - f64) ** 2)) < 1e-3  # eV/Å: the 1 meV/Å
    np.testing.assert_allclose(s32, s64, atol=1e-5)


def test_cuda_forces_and_stress_are_derivatives():
    atoms = STRUCTURES["triclinic-sic"]()
    atoms.calc = StackedCalculator(make_stack(), device="cuda")
    assert_forces_are_gradients(atoms)
    assert_stress_is_strain_derivative(atoms)


def test_cuda_md_follows_the_cpu_trajectory():
    """50 steps of NVE with the Verlet skin: the GPU and CPU runs stay on one trajectory."""
    runs = []
    for device in ("cpu", "cuda"):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=3)
        atoms.set_momenta(np.random.default_rng(0).normal(0, 0.3, (len(atoms), 3)))
        atoms.calc = StackedCalculator(make_stack(), device=device)
        dyn = VelocityVerlet(atoms, 1.0 * units.fs)
        dyn.run(50)
        runs.append((atoms.positions.copy(), atoms.get_total_energy()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], atol=1e-8)
    assert runs[1][1] == pytest.approx(runs[0][1], abs=1e-8)


def test_cuda_compile_matches_eager():
    atoms = STRUCTURES["rattled-si"]()
    atoms.calc = StackedCalculator(make_stack(), device="cuda")
    eager = atoms.get_forces().copy(), atoms.get_stress().copy()
    atoms.calc = StackedCalculator(make_stack(), device="cuda", compile=True)
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert atoms.calc.evaluator.path == "compiled"
    np.testing.assert_allclose(forces, eager[0], atol=1e-10)
    np.testing.assert_allclose(stress, eager[1], atol=1e-12)
