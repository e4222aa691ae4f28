import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from helpers import ELEMENTS, STRUCTURES, make_ace, make_onebody, make_pair, make_stack
from scipy.spatial.transform import Rotation

from mlff import ACEModel, SiteCalculator, StackedCalculator
from mlff.testing import (
    assert_forces_are_gradients,
    assert_invariant,
    assert_stress_is_strain_derivative,
)


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


ORTHOGONAL = {
    "rotation": Rotation.random(random_state=7).as_matrix(),
    "reflection": np.diag([1.0, -1.0, 1.0]),
}


@pytest.mark.parametrize("transform", sorted(ORTHOGONAL))
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_rotation_and_reflection_invariance(name, transform):
    atoms = STRUCTURES[name]()
    matrix = ORTHOGONAL[transform]
    atoms.calc = StackedCalculator(make_stack().parts)
    moved = _rotated(atoms, matrix)
    moved.calc = StackedCalculator(make_stack().parts)
    assert_invariant(atoms, moved, rotation=matrix)


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
    np.testing.assert_allclose(
        moved.get_potential_energies(), atoms.get_potential_energies()[perm], atol=1e-10
    )


@pytest.mark.parametrize("name", ["rattled-si", "triclinic-sic", "small-cell-si"])
def test_extensivity(name):
    atoms = STRUCTURES[name]()
    calc = StackedCalculator(make_stack().parts)
    atoms.calc = calc
    big = atoms.repeat((2, 1, 3))
    big.calc = calc
    assert big.get_potential_energy() == pytest.approx(
        6 * atoms.get_potential_energy(), rel=1e-10, abs=1e-9
    )
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), atol=1e-10)
    np.testing.assert_allclose(big.get_forces()[: len(atoms)], atoms.get_forces(), atol=1e-10)


def test_site_energies_sum_to_energy(structure):
    structure.calc = StackedCalculator(make_stack().parts)
    energies = structure.get_potential_energies()
    assert energies.shape == (len(structure),)
    assert energies.sum() == pytest.approx(structure.get_potential_energy(), abs=1e-10)
    assert structure.calc.results["free_energy"] == structure.calc.results["energy"]


class _CountingACE(ACEModel):
    """Counts gradient evaluations (energies together with their edge gradients), on the
    torch path (graphs) and on the CPU kernels' numpy path."""

    gradient_calls = 0

    def energies_and_grads(self, graph):
        type(self).gradient_calls += 1
        return super().energies_and_grads(graph)

    def compiled(self, dtype, theta=None, constant=None):
        (part,) = super().compiled(dtype, theta, constant)

        def counted(edges, species, n_threads):
            type(self).gradient_calls += 1
            return part.run(edges, species, n_threads)

        return (part._replace(run=counted),)


def test_properties_are_honoured_on_the_torch_path():
    atoms = STRUCTURES["rattled-si"]()
    model = _CountingACE(ELEMENTS, cutoff=4.0, n_max=3, l_max=2, max_degree={1: 3, 2: 4, 3: 5})
    _CountingACE.gradient_calls = 0
    calc = SiteCalculator(model, backend="torch")
    calc.calculate(atoms, ["energy"])
    assert _CountingACE.gradient_calls == 0, "an energy-only call must not compute gradients"
    assert set(calc.results) == {"energy", "free_energy", "energies"}
    calc.calculate(atoms, ["energy", "forces"])
    assert _CountingACE.gradient_calls == 1
    assert "forces" in calc.results and "stress" in calc.results  # free with the gradients
    atoms.calc = calc
    atoms.get_stress()
    assert _CountingACE.gradient_calls == 1, (
        "stress after forces (as NPT asks) must not re-evaluate"
    )
    calc.calculate(atoms, ["energy", "forces", "stress"])
    assert _CountingACE.gradient_calls == 2, (
        "forces and stress must come from one gradient evaluation"
    )
    assert calc.results["stress"].shape == (6,)


def test_kernel_path_gives_every_property_from_one_evaluation():
    """The CPU kernels give energies and gradients together, so any call stores energy,
    forces and (3D-periodic cells) stress, and later requests re-evaluate nothing."""
    atoms = STRUCTURES["rattled-si"]()
    model = _CountingACE(ELEMENTS, cutoff=4.0, n_max=3, l_max=2, max_degree={1: 3, 2: 4, 3: 5})
    _CountingACE.gradient_calls = 0
    calc = SiteCalculator(model)
    assert calc.evaluator.uses_kernels
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert _CountingACE.gradient_calls == 1
    assert set(calc.results) == {"energy", "free_energy", "energies", "forces", "stress"}
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert _CountingACE.gradient_calls == 1, (
        "forces and stress after an energy call must not re-evaluate"
    )
    reference = SiteCalculator(model, backend="torch")
    reference.calculate(atoms, ["energy", "forces", "stress"])
    assert energy == pytest.approx(reference.results["energy"], abs=1e-10)
    np.testing.assert_allclose(forces, reference.results["forces"], atol=1e-10)
    np.testing.assert_allclose(stress, reference.results["stress"], atol=1e-12)


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


@pytest.mark.parametrize(
    "atoms",
    [
        Atoms("Si"),
        Atoms("Si", cell=[12, 12, 12], pbc=True),
        Atoms("SiC", positions=[[0, 0, 0], [4.2, 0, 0]]),  # inside the pair cutoff, outside ACE's
        Atoms("SiC", positions=[[0, 0, 0], [9.0, 0, 0]]),
    ],
    ids=["lone-atom", "lone-periodic-atom", "beyond-ace-cutoff", "beyond-all-cutoffs"],
)
def test_graphs_with_no_edges_for_some_part(atoms):
    atoms.calc = StackedCalculator(make_stack().parts)
    e0 = sum({"Si": -0.7, "C": -2.3}[s] for s in atoms.get_chemical_symbols())
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    if atoms.get_distance(0, -1) > 4.5 or len(atoms) == 1:
        assert energy == pytest.approx(e0, abs=1e-12) and not forces.any()
    else:
        assert energy != pytest.approx(e0) and np.abs(forces).max() > 0
        assert_forces_are_gradients(atoms)
    if atoms.pbc.all():
        assert_stress_is_strain_derivative(atoms)


def test_a_model_shared_by_calculators_is_not_changed():
    pair = make_pair()
    theta = pair.get_linear_parameters()
    atoms = STRUCTURES["triclinic-sic"]()
    calc64 = SiteCalculator(pair)
    calc32 = SiteCalculator(pair, dtype=torch.float32)
    assert pair.dtype == torch.float64
    torch.testing.assert_close(pair.get_linear_parameters(), theta, rtol=0, atol=0)
    atoms.calc = calc64
    f64 = atoms.get_forces().copy()
    s64 = atoms.get_stress().copy()
    atoms.calc = calc32
    assert np.abs(atoms.get_forces() - f64).max() < 1e-4
    assert np.abs(atoms.get_stress() - s64).max() < 1e-6
    atoms.calc = calc64
    np.testing.assert_array_equal(atoms.get_forces(), f64)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_results_of_a_previous_structure_are_never_returned(backend):
    calc = StackedCalculator(make_stack().parts, backend=backend)
    a, b = STRUCTURES["rattled-si"](), STRUCTURES["rattled-si"]()
    b.rattle(0.1, seed=9)
    calc.calculate(a, ["energy", "forces", "stress"])
    calc.calculate(b, ["energy"])
    fresh = StackedCalculator(make_stack().parts)
    if backend == "torch":  # an energy-only call computes no gradients there
        assert "forces" not in calc.results and "stress" not in calc.results
    else:  # the kernels give b's forces and stress with its energy
        np.testing.assert_allclose(calc.results["forces"], fresh.get_forces(b), atol=1e-12)
        np.testing.assert_allclose(calc.results["stress"], fresh.get_stress(b), atol=1e-12)
    np.testing.assert_allclose(calc.get_forces(b), fresh.get_forces(b), atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_the_calculator_holds_its_own_copy_of_the_atoms(backend):
    """ASE's cache compares the atoms with the calculator's copy, through get_property and
    when calculate() is called directly: an in-place move of the caller's atoms is seen."""
    atoms = STRUCTURES["rattled-si"]()
    calc = StackedCalculator(make_stack().parts, backend=backend)
    atoms.calc = calc
    before = atoms.get_forces()
    assert calc.atoms is not atoms and calc.atoms == atoms
    atoms.positions[0] += 0.05  # in place: only a copy remembers where the atom was
    moved = atoms.get_forces()
    assert np.abs(moved - before).max() > 1e-3
    np.testing.assert_allclose(
        moved, StackedCalculator(make_stack().parts).get_forces(atoms), atol=1e-12
    )
    assert calc.atoms == atoms
    other = atoms.copy()
    other.positions[1] += 0.05
    calc.calculate(other, ["energy", "forces"], ["positions"])
    assert calc.atoms is not other and calc.atoms == other
    other.positions[2] += 0.05
    assert calc.check_state(other) == ["positions"]


def test_graph_built_at_too_small_a_cutoff_is_refused():
    from mlff import build_graph

    ace = make_ace()
    graph = build_graph(STRUCTURES["triclinic-sic"](), 2.5)
    with pytest.raises(ValueError, match=r"cutoff 2.5 Å but ACEModel needs 4.0 Å"):
        ace.site_energies(graph)


def test_overlapping_atoms_are_refused():
    atoms = Atoms("Si2", positions=[[1, 1, 1], [1, 1, 1]])
    atoms.calc = StackedCalculator(make_stack().parts)
    with pytest.raises(ValueError, match="atoms 0 and 1 .* apart; atoms must not overlap"):
        atoms.get_potential_energy()


def test_numpy_scalars_and_bad_r0():
    from mlff import PairModel

    model = PairModel(np.unique(np.array([14, 6, 14])), cutoff=np.float64(5.0))
    assert model.elements == ("C", "Si")
    with pytest.raises(ValueError, match=r"r0 must be a symmetric \(2, 2\) tensor"):
        PairModel(["Si", "C"], r0=torch.ones(1, 1))
    with pytest.raises(ValueError, match="r0 must be"):
        ACEModel(["Si"], r0=torch.tensor([[-1.0]]))


def test_compile_failure_falls_back_to_eager_with_a_log_line(caplog):
    import logging

    atoms = STRUCTURES["rattled-si"]()
    eager = StackedCalculator(make_stack().parts, backend="torch")  # compile=True implies torch
    calc = StackedCalculator(make_stack().parts, compile=True)
    assert calc.evaluator.path == "compile-pending"

    def broken(*args):
        raise RuntimeError("no C++ compiler found")

    calc.evaluator._compiled = broken  # what a failed inductor build looks like to the caller
    with caplog.at_level(logging.WARNING, logger="mlff"):
        calc.calculate(atoms, ["energy", "forces"])
    assert calc.evaluator.path == "eager (compile failed)"
    assert any("falling back to the eager path" in r.getMessage() for r in caplog.records)
    eager.calculate(atoms, ["energy", "forces"])
    assert np.array_equal(calc.results["forces"], eager.results["forces"])


def test_bad_thread_count_is_refused():
    with pytest.raises(ValueError, match="num_threads"):
        StackedCalculator(make_stack().parts, num_threads=0)


def test_float32_calculator_agrees_with_float64():
    atoms = STRUCTURES["triclinic-sic"]()
    stack = make_stack()
    c64, c32 = StackedCalculator(stack), StackedCalculator(stack, dtype=torch.float32)
    c64.calculate(atoms, ["energy", "forces", "stress"])
    c32.calculate(atoms, ["energy", "forces", "stress"])
    scale = np.abs(c64.results["forces"]).max()
    assert np.abs(c32.results["forces"] - c64.results["forces"]).max() < 1e-4 * scale
    assert abs(c32.results["energy"] - c64.results["energy"]) < 1e-5 * max(
        1.0, abs(c64.results["energy"])
    )


class _ThreadsSeen(ACEModel):
    """Records torch's thread count inside each torch-route call."""

    seen: list = []

    def energies_and_grads(self, graph):
        type(self).seen.append(torch.get_num_threads())
        return super().energies_and_grads(graph)


@pytest.mark.parametrize("num_threads, expected", [(None, 1), (2, 2), (1, 1)])
def test_torch_route_threads_follow_the_measured_default(num_threads, expected):
    """The torch route on the CPU runs small systems on one thread unless told otherwise,
    and leaves torch's process-wide setting as it found it."""
    atoms = STRUCTURES["rattled-si"]()
    model = _ThreadsSeen(ELEMENTS, cutoff=4.0, n_max=3, l_max=2, max_degree={1: 3, 2: 4, 3: 5})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _ThreadsSeen.seen = []
        calc = SiteCalculator(model, backend="torch", num_threads=num_threads)
        calc.calculate(atoms, ["energy", "forces"])
        assert _ThreadsSeen.seen == [expected]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
