import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from scipy.spatial.transform import Rotation

from conftest import ELEMENTS, STRUCTURES, make_ace, make_onebody, make_pair, make_stack
from mlff import ACEModel, SiteCalculator, StackedCalculator
from mlff.testing import assert_forces_are_gradients, assert_invariant, assert_stress_is_strain_derivative


def test_forces_are_minus_energy_gradient(model, structure):
    structure.calc = SiteCalculator(model)
    assert_forces_are_gradients(structure, rtol=1e-6)


def test_stress_is_strain_derivative(model, structure):
    if not structure.pbc.all():
        pytest.skip("stress is defined for 3D-periodic cells only")
    structure.calc = SiteCalculator(model)
    assert_stress_is_strain_derivative(structure, rtol=1e-6)


def test_forces_are_not_trivially_zero(structure):
    structure.calc = StackedCalculator(make_stack().parts)
    assert np.abs(structure.get_forces()).max() > 1e-2


def _rotated(atoms, rotation):
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    out.positions = atoms.positions @ rotation.T
    return out


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_rotation_invariance(name):
    atoms = STRUCTURES[name]()
    rotation = Rotation.random(random_state=7).as_matrix()
    calc = StackedCalculator(make_stack().parts)
    atoms.calc = calc
    moved = _rotated(atoms, rotation)
    moved.calc = StackedCalculator(make_stack().parts)
    assert_invariant(atoms, moved, rotation=rotation)


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_reflection_invariance(name):
    atoms = STRUCTURES[name]()
    mirror = np.diag([1.0, -1.0, 1.0])
    atoms.calc = StackedCalculator(make_stack().parts)
    moved = _rotated(atoms, mirror)
    moved.calc = StackedCalculator(make_stack().parts)
    assert_invariant(atoms, moved, rotation=mirror)


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_translation_and_wrapping_invariance(name):
    atoms = STRUCTURES[name]()
    atoms.calc = StackedCalculator(make_stack().parts)
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.21, 2.9])
    if atoms.pbc.any():
        moved.wrap()
    moved.calc = StackedCalculator(make_stack().parts)
    assert_invariant(atoms, moved)


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_permutation_invariance(name):
    atoms = STRUCTURES[name]()
    atoms.calc = StackedCalculator(make_stack().parts)
    perm = np.random.default_rng(3).permutation(len(atoms))
    moved = atoms[perm]
    moved.calc = StackedCalculator(make_stack().parts)
    assert_invariant(atoms, moved, permutation=perm)
    np.testing.assert_allclose(moved.get_potential_energies(), atoms.get_potential_energies()[perm], atol=1e-10)


@pytest.mark.parametrize("name", ["rattled-si", "triclinic-sic", "small-cell-si"])
def test_extensivity(name):
    atoms = STRUCTURES[name]()
    calc = StackedCalculator(make_stack().parts)
    atoms.calc = calc
    big = atoms.repeat((2, 1, 3))
    big.calc = calc
    assert big.get_potential_energy() == pytest.approx(6 * atoms.get_potential_energy(), rel=1e-10, abs=1e-9)
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), atol=1e-10)
    np.testing.assert_allclose(big.get_forces()[: len(atoms)], atoms.get_forces(), atol=1e-10)


def test_site_energies_sum_to_energy(structure):
    structure.calc = StackedCalculator(make_stack().parts)
    energies = structure.get_potential_energies()
    assert energies.shape == (len(structure),)
    assert energies.sum() == pytest.approx(structure.get_potential_energy(), abs=1e-10)
    assert structure.calc.results["free_energy"] == structure.calc.results["energy"]


class _CountingACE(ACEModel):
    """Counts backward passes through its site energies."""

    backward_calls = 0

    def site_energies(self, graph):
        energies = super().site_energies(graph)
        if energies.requires_grad:
            energies.register_hook(self._count)
        return energies

    @classmethod
    def _count(cls, grad):
        cls.backward_calls += 1


def test_properties_are_honoured():
    atoms = STRUCTURES["rattled-si"]()
    model = _CountingACE(ELEMENTS, cutoff=4.0, n_max=3, l_max=2, max_degree={1: 3, 2: 4, 3: 5})
    calc = SiteCalculator(model)
    calc.calculate(atoms, ["energy"])
    assert _CountingACE.backward_calls == 0
    assert set(calc.results) == {"energy", "free_energy", "energies"}
    calc.calculate(atoms, ["energy", "forces"])
    assert _CountingACE.backward_calls == 1
    assert "forces" in calc.results and "stress" not in calc.results
    calc.calculate(atoms, ["energy", "forces", "stress"])
    assert _CountingACE.backward_calls == 2, "forces and stress must come from one backward pass"
    assert calc.results["stress"].shape == (6,)


@pytest.mark.parametrize("name", ["si-slab", "methane"])
def test_stress_of_non_periodic_system_is_refused(name):
    atoms = STRUCTURES[name]()
    atoms.calc = StackedCalculator(make_stack().parts)
    with pytest.raises(PropertyNotImplementedError, match="3D-periodic"):
        atoms.get_stress()
    assert np.isfinite(atoms.get_forces()).all()


def test_unknown_element_names_it_and_lists_known():
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = StackedCalculator(make_stack().parts)
    with pytest.raises(ValueError, match=r"Cu not known to .*known elements: H, C, Si"):
        atoms.get_potential_energy()


def test_bad_positions_and_empty_atoms_are_refused():
    atoms = STRUCTURES["rattled-si"]()
    atoms.calc = StackedCalculator(make_stack().parts)
    energy = atoms.get_potential_energy()
    atoms.positions[3, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        atoms.get_potential_energy()
    atoms.positions[3, 1] = 0.0
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_potential_energy() != energy
    empty = atoms[[]]
    empty.calc = atoms.calc
    with pytest.raises(ValueError, match="zero atoms"):
        empty.get_potential_energy()


def test_dtype_and_device_mismatch_are_refused():
    from mlff import build_graph

    model = make_pair()
    graph = build_graph(STRUCTURES["rattled-si"](), model.cutoff, dtype=torch.float32)
    with pytest.raises(ValueError, match="float32.*float64"):
        model.site_energies(graph)
    with pytest.raises(ValueError, match="dtype"):
        SiteCalculator(model, dtype=torch.int64)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SiteCalculator(model, device="cuda")


def test_float32_calculator_agrees_with_float64():
    atoms = STRUCTURES["triclinic-sic"]()
    parts = make_stack().parts
    atoms.calc = StackedCalculator(parts)
    f64 = atoms.get_forces().copy()
    atoms.calc = StackedCalculator(make_stack().parts, dtype=torch.float32)
    f32 = atoms.get_forces()
    assert np.abs(f32 - f64).max() < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    atoms = STRUCTURES["rattled-si"]()
    atoms.calc = StackedCalculator(make_stack().parts)
    cpu = atoms.get_forces().copy(), atoms.get_stress().copy()
    atoms.calc = StackedCalculator(make_stack().parts, device="cuda")
    np.testing.assert_allclose(atoms.get_forces(), cpu[0], atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), cpu[1], atol=1e-12)


def test_onebody_alone_gives_reference_energies():
    atoms = STRUCTURES["methane"]()
    atoms.calc = SiteCalculator(make_onebody())
    assert atoms.get_potential_energy() == pytest.approx(-2.3 - 4 * 1.1)
    assert not atoms.get_forces().any()
