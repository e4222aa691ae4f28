import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from emt_data import label
from helpers import STRUCTURES, make_ace, make_stack

from mlff import (
    SiteCalculator,
    Stack,
    StackedCalculator,
    build_graph,
    forces_from_edge_grads,
    virial_from_edge_grads,
    voigt,
)
from mlff.fitting import (
    NormalEquations,
    Weights,
    assemble,
    energy_forces_virial_basis,
    potential_energy_basis,
    read_labels,
)


@pytest.mark.parametrize("name", ["triclinic-sic", "si-slab", "methane"])
def test_rows_times_theta_plus_fixed_reproduce_the_calculator(name):
    stack = make_stack()
    atoms = STRUCTURES[name]()
    e_row, f_rows, v_rows = energy_forces_virial_basis(atoms, stack)
    theta = stack.get_linear_parameters().numpy()
    linear_only = SiteCalculator(make_stack())
    # The same stack with θ = 0 gives exactly the fixed parts.
    fixed_stack = make_stack()
    fixed_stack.set_linear_parameters(torch.zeros(stack.length_basis(), dtype=torch.float64))
    atoms.calc = SiteCalculator(fixed_stack)
    e_fixed, f_fixed = atoms.get_potential_energy(), atoms.get_forces().copy()
    atoms.calc = linear_only
    assert e_row @ theta + e_fixed == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(f_rows @ theta + f_fixed, atoms.get_forces(), atol=1e-9)
    if atoms.pbc.all():
        stress = atoms.get_stress()
        atoms.calc = SiteCalculator(fixed_stack)
        virial = (v_rows @ theta) - atoms.get_stress() * atoms.get_volume()
        np.testing.assert_allclose(virial, -stress * atoms.get_volume(), atol=1e-9)


def test_force_rows_match_finite_differences_of_the_energy_basis():
    stack = make_stack()
    atoms = STRUCTURES["triclinic-sic"]()
    _, f_rows, _ = energy_forces_virial_basis(atoms, stack)
    eps = 1e-5
    for a, c in [(0, 0), (1, 2), (3, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, c] += eps
        minus.positions[a, c] -= eps
        fd = -(potential_energy_basis(plus, stack) - potential_energy_basis(minus, stack)) / (
            2 * eps
        )
        scale = max(np.abs(fd).max(), 1e-8)
        assert np.abs(f_rows[a, c] - fd).max() / scale < 1e-6


def test_virial_rows_match_finite_differences_under_strain():
    stack = make_stack()
    atoms = STRUCTURES["small-cell-si"]()
    _, _, v_rows = energy_forces_virial_basis(atoms, stack)
    eps = 1e-6
    # W_xy = -∂E/∂ε_xy (symmetric strain): compare for xx and yz.
    for component, (i, j) in [(0, (0, 0)), (3, (1, 2))]:
        rows = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * eps / (1 if i == j else 2)
            strain[j, i] = strain[i, j]
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            rows.append(potential_energy_basis(moved, stack))
        fd = -(rows[0] - rows[1]) / (2 * eps)
        assert np.abs(v_rows[component] - fd).max() / max(np.abs(fd).max(), 1e-8) < 1e-6


def _labelled_stack_data():
    stack = make_stack()
    calc = StackedCalculator(make_stack().parts)
    data = []
    for name in ["rattled-si", "triclinic-sic", "methane", "si-slab"]:
        data.append(label(STRUCTURES[name](), name, calc=calc))
    return stack, data


def test_row_counts_and_metadata():
    stack, data = _labelled_stack_data()
    problem = assemble(data, stack)
    expected = sum(1 + 3 * len(a) + (6 if a.pbc.all() else 0) for a in data)
    assert problem.A.shape == (expected, stack.length_basis())
    assert problem.n_rows == expected == len(problem.y) == len(problem.w)
    for index, atoms in enumerate(data):
        mine = problem.config == index
        assert (problem.prop[mine] == 0).sum() == 1
        assert (problem.prop[mine] == 1).sum() == 3 * len(atoms)
        assert (problem.prop[mine] == 2).sum() == (6 if atoms.pbc.all() else 0)
    assert problem.config_types == ["rattled-si", "triclinic-sic", "methane", "si-slab"]


def test_targets_subtract_fixed_parts_so_true_theta_has_zero_residual():
    stack, data = _labelled_stack_data()
    problem = assemble(data, stack)
    theta = make_stack().get_linear_parameters().numpy()
    assert np.abs(problem.A @ theta - problem.y).max() < 1e-8


def test_weights_per_property_and_config_type():
    stack, data = _labelled_stack_data()
    weights = Weights(
        energy=10.0,
        forces=2.0,
        virial=0.5,
        per_config_type={"methane": 3.0, "si-slab": {"forces": 0.0}},
    )
    problem = assemble(data, stack, weights=weights)
    for index, ctype in enumerate(problem.config_types):
        mine = problem.config == index
        factor = {"methane": 3.0}.get(ctype, 1.0)
        assert np.all(problem.w[mine & (problem.prop == 0)] == 10.0 * factor)
        expected_f = 0.0 if ctype == "si-slab" else 2.0 * factor
        assert np.all(problem.w[mine & (problem.prop == 1)] == expected_f)
        assert np.all(problem.w[mine & (problem.prop == 2)] == 0.5 * factor)
    with pytest.raises(ValueError, match="unknown property 'charge'"):
        Weights(per_config_type={"x": {"charge": 1.0}})
    with pytest.raises(ValueError, match="finite number >= 0"):
        Weights(energy=-1.0)


def test_normal_equations_and_workers_agree_with_rows():
    stack, data = _labelled_stack_data()
    problem = assemble(data, stack)
    normal = assemble(data, stack, normal_equations=True)
    assert isinstance(normal, NormalEquations) and normal.n_rows == problem.n_rows
    Aw, yw = problem.A * problem.w[:, None], problem.y * problem.w
    np.testing.assert_allclose(normal.AtA, Aw.T @ Aw, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(normal.Aty, Aw.T @ yw, rtol=1e-10, atol=1e-8)
    parallel = assemble(data, stack, n_workers=2)
    np.testing.assert_allclose(parallel.A, problem.A, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(parallel.config, problem.config)


def test_missing_labels_give_no_rows():
    stack, data = _labelled_stack_data()
    atoms = data[0]
    energy_only = atoms.copy()
    energy_only.info["energy"] = atoms.get_potential_energy()
    energy_only.info["config_type"] = "energy-only"
    forces_only = atoms.copy()
    forces_only.arrays["forces"] = atoms.get_forces()
    problem = assemble([energy_only, forces_only], stack)
    assert (problem.prop[problem.config == 0] == 0).sum() == 1 and (problem.config == 0).sum() == 1
    assert (problem.config == 1).sum() == 3 * len(atoms) and (
        problem.prop[problem.config == 1] == 1
    ).all()


def test_nan_label_names_the_configuration():
    stack, data = _labelled_stack_data()
    bad = data[2].copy()
    forces = data[2].get_forces().copy()
    forces[1, 2] = np.nan
    bad.arrays["forces"] = forces
    with pytest.raises(ValueError, match="configuration 3: the forces label contains NaN"):
        assemble(data[:3] + [bad], stack)


def test_unknown_element_in_data_is_refused():
    stack = make_stack()
    cu = bulk("Cu", "fcc", a=3.6)
    cu.info["energy"] = 0.0
    with pytest.raises(ValueError, match="configuration 0 contains element\\(s\\) Cu not known"):
        assemble([cu], stack)


def test_stress_labels_of_non_periodic_configurations_are_ignored():
    labels = read_labels(
        Atoms(
            "Si2", positions=[[0, 0, 0], [2.3, 0, 0]], info={"stress": np.ones(6), "energy": 1.0}
        ),
        0,
    )
    assert labels.stress is None and labels.energy == 1.0


def _bad_configurations() -> dict:
    """Configurations that cannot be assembled, each with what its error must say."""
    overlap = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]], cell=[5, 5, 5], pbc=True)
    nan_cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    nan_cell.cell[0, 0] = np.nan
    flat = bulk("Cu", "fcc", a=3.6, cubic=True)
    flat.cell[2] = flat.cell[1]
    iron = Atoms("Fe", cell=[5, 5, 5], pbc=True)
    negative_z = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[5, 5, 5], pbc=True)
    negative_z.numbers[1] = -2  # not read as element 116 (Lv)
    cases = {
        "negative-Z": (
            negative_z,
            r"atoms \[1\] have atomic numbers \[-2\]; atomic numbers must be 1 to 118",
        ),
        "overlap": (overlap, "atoms 0 and 1 .* apart; atoms must not overlap"),
        "nan-cell": (nan_cell, "cell entry \\[0\\]\\[0\\] is nan"),
        "unknown-element": (iron, "contains element\\(s\\) Fe not known to the model"),
        "zero-volume-stress": (
            flat,
            r"the periodic cell vectors \[0, 1, 2\] are linearly dependent",
        ),
    }
    for atoms, _ in cases.values():
        atoms.info["energy"] = -1.0
        atoms.arrays["forces"] = np.zeros((len(atoms), 3))
    flat.info["stress"] = np.zeros(6)
    energy_shape = bulk("Cu", "fcc", a=3.6, cubic=True)
    energy_shape.info["energy"] = np.ones(2)
    cases["energy-shape"] = (
        energy_shape,
        "the energy label has shape \\(2,\\); expected one number",
    )
    return cases


def _cu_stack():
    from mlff import ACEModel, OneBody, PairModel, Stack

    return Stack(
        [
            OneBody({"Cu": 0.0}),
            PairModel(["Cu"], cutoff=4.0, n_max=4),
            ACEModel(["Cu"], cutoff=4.0, n_max=3),
        ]
    )


@pytest.mark.parametrize("case", sorted(_bad_configurations()))
def test_assembly_errors_name_the_configuration(case):
    bad, match = _bad_configurations()[case]
    good = [label(bulk("Cu", "fcc", a=a, cubic=True), "bulk") for a in (3.55, 3.65)]
    with pytest.raises(ValueError, match=f"^configuration 2:? .*{match}") as info:
        assemble([*good, bad], _cu_stack())
    assert str(info.value).count("configuration 2") == 1


def test_assembly_errors_name_the_configuration_in_worker_processes():
    bad, _ = _bad_configurations()["overlap"]
    good = [label(bulk("Cu", "fcc", a=a, cubic=True), "bulk") for a in (3.55, 3.65, 3.6)]
    with pytest.raises(ValueError, match="^configuration 3: atoms 0 and 1"):
        assemble([*good, bad], _cu_stack(), n_workers=2)


def test_assembly_errors_keep_their_type_and_cause(monkeypatch):
    from mlff.fitting import assembly

    original = assembly._rows_for

    def failing(atoms, labels, model, weights, index):
        if index == 1:
            raise KeyError("no such basis block")
        return original(atoms, labels, model, weights, index)

    monkeypatch.setattr(assembly, "_rows_for", failing)
    data = [label(bulk("Cu", "fcc", a=a, cubic=True), "bulk") for a in (3.55, 3.65)]
    with pytest.raises(KeyError, match="configuration 1: 'no such basis block'") as info:
        assemble(data, _cu_stack())
    assert isinstance(info.value.__cause__, KeyError)


def test_non_finite_rows_name_the_configuration(monkeypatch):
    from mlff.fitting import assembly

    original = assembly._fixed_parts

    def nan_energy(model, graph):
        energy, forces, virial = original(model, graph)
        return (np.nan if graph.n_atoms == 2 else energy), forces, virial

    monkeypatch.setattr(assembly, "_fixed_parts", nan_energy)
    data = [
        label(bulk("Cu", "fcc", a=3.6, cubic=True), "bulk"),
        label(bulk("Cu", "hcp", a=2.55), "hcp"),
    ]
    with pytest.raises(
        ValueError, match="configuration 1: its energy targets contain NaN/inf \\(1 rows\\)"
    ):
        assemble(data, _cu_stack())


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_compiled_design_rows_equal_the_jacobian_route(name):
    """ACE's compiled force and virial rows (three elements, every test structure) equal the
    rows the per-edge Jacobian gives through the protocol's scatter and virial."""
    from mlff.protocol import LinearSiteModel

    atoms = STRUCTURES[name]()
    for model in (make_ace(), make_stack()):
        graph = build_graph(atoms, model.cutoff)
        basis, forces, virial = model.design_rows(graph)
        if isinstance(model, Stack):
            basis0, jac = model.site_basis_jacobian(graph)
            forces0 = forces_from_edge_grads(jac, graph).permute(0, 2, 1)
            virial0 = voigt(virial_from_edge_grads(jac, graph)).T
        else:
            basis0, forces0, virial0 = LinearSiteModel.design_rows(model, graph)
        torch.testing.assert_close(basis, basis0, rtol=0, atol=1e-12)
        scale = float(forces0.abs().max())
        torch.testing.assert_close(forces, forces0, rtol=0, atol=1e-12 * scale)
        torch.testing.assert_close(virial, virial0, rtol=0, atol=1e-12 * float(virial0.abs().max()))
