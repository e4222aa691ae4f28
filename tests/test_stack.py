import numpy as np
import pytest
import torch
from helpers import STRUCTURES, make_ace, make_onebody, make_pair, make_stack

from mlff import SiteCalculator, Stack, StackedCalculator, build_graph, forces_from_edge_grads
from mlff.models import PairModel


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_stack_equals_sum_of_parts(name):
    atoms = STRUCTURES[name]()
    parts = [make_onebody(), make_pair(), make_ace()]
    stack = StackedCalculator(parts)
    atoms.calc = stack
    periodic = atoms.pbc.all()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces().copy()
    energies = atoms.get_potential_energies().copy()
    stress = atoms.get_stress().copy() if periodic else None
    sum_e, sum_f, sum_ei, sum_s = 0.0, np.zeros_like(forces), np.zeros_like(energies), np.zeros(6)
    for part in parts:
        atoms.calc = SiteCalculator(part)
        sum_e += atoms.get_potential_energy()
        sum_f += atoms.get_forces()
        sum_ei += atoms.get_potential_energies()
        if periodic:
            sum_s += atoms.get_stress()
    assert energy == pytest.approx(sum_e, abs=1e-10)
    np.testing.assert_allclose(forces, sum_f, atol=1e-10)
    np.testing.assert_allclose(energies, sum_ei, atol=1e-10)
    if periodic:
        np.testing.assert_allclose(stress, sum_s, atol=1e-12)


def test_stack_cutoff_and_elements():
    stack = make_stack()
    assert stack.cutoff == max(p.cutoff for p in stack.parts) == 4.5
    assert stack.elements == ("H", "C", "Si")
    narrow = Stack([make_pair(), PairModel(["Si"], cutoff=3.0)])
    assert narrow.elements == ("Si",)
    with pytest.raises(ValueError, match="share no element"):
        Stack([PairModel(["C"]), PairModel(["Si"])])
    with pytest.raises(ValueError, match="non-empty list of SiteModel"):
        Stack([])
    with pytest.raises(ValueError, match="expects a list of models"):
        Stack(make_pair())
    with pytest.raises(ValueError, match="expects a list of models"):
        StackedCalculator(make_pair())


@pytest.mark.parametrize("factory", [make_pair, make_ace, make_stack])
@pytest.mark.parametrize("name", ["triclinic-sic", "methane"])
def test_site_basis_times_theta_gives_site_energies(factory, name):
    model = factory()
    graph = build_graph(STRUCTURES[name](), model.cutoff)
    basis = model.site_basis(graph)
    assert basis.shape == (graph.n_atoms, model.length_basis())
    theta = model.get_linear_parameters()
    predicted = basis @ theta + model.fixed_site_energies(graph)
    torch.testing.assert_close(predicted, model.site_energies(graph), rtol=0, atol=1e-11)


def test_parameters_round_trip_and_concatenate_in_order():
    stack = make_stack()
    pair, ace = stack.linear_parts
    assert stack.length_basis() == pair.length_basis() + ace.length_basis()
    theta = torch.randn(stack.length_basis(), dtype=torch.float64)
    stack.set_linear_parameters(theta)
    torch.testing.assert_close(stack.get_linear_parameters(), theta, rtol=0, atol=0)
    torch.testing.assert_close(
        pair.get_linear_parameters(), theta[: pair.length_basis()], rtol=0, atol=0
    )
    with pytest.raises(ValueError, match=r"expects θ of shape"):
        stack.set_linear_parameters(theta[:-1])
    with pytest.raises(ValueError, match="NaN"):
        pair.set_linear_parameters(torch.full((pair.length_basis(),), float("nan")))


def test_species_blocks_follow_theta_layout():
    """θ[s·n_basis + k]: an atom's design row is non-zero only in its element's block."""
    ace = make_ace()
    graph = build_graph(STRUCTURES["triclinic-sic"](), ace.cutoff)
    basis = ace.site_basis(graph).reshape(graph.n_atoms, ace.n_elements, ace.n_basis)
    species = ace.species(graph)
    for i, s in enumerate(species.tolist()):
        others = [t for t in range(ace.n_elements) if t != s]
        assert basis[i, others].abs().max() == 0
        assert basis[i, s].abs().max() > 0


@pytest.mark.parametrize("factory", [make_pair, make_ace, make_stack])
def test_site_basis_jacobian_matches_finite_differences(factory):
    model = factory()
    atoms = STRUCTURES["triclinic-sic"]()
    graph = build_graph(atoms, model.cutoff)
    basis, jac = model.site_basis_jacobian(graph)
    assert jac.shape == (graph.n_edges, model.length_basis(), 3)
    torch.testing.assert_close(basis, model.site_basis(graph), rtol=0, atol=1e-12)
    # −∂(Σ_i B_ik)/∂x_a from the Jacobian, against central differences of positions.
    minus_grad = forces_from_edge_grads(jac, graph)  # (n_atoms, P, 3)
    eps = 1e-5
    for a in (0, 3):
        for c in range(3):
            shifted = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[a, c] += sign * eps
                shifted.append(model.site_basis(build_graph(moved, model.cutoff)).sum(0))
            fd = (shifted[0] - shifted[1]) / (2 * eps)
            scale = fd.abs().max().clamp_min(1e-8)
            err = (minus_grad[a, :, c] + fd).abs().max() / scale
            assert err < 1e-6, f"atom {a} axis {c}: relative error {err:.2e}"


@pytest.mark.parametrize("factory", [make_pair, make_ace])
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_closed_form_jacobian_equals_generic_autograd(factory, name):
    from mlff.protocol import LinearSiteModel

    model = factory()
    graph = build_graph(STRUCTURES[name](), model.cutoff)
    basis, jac = model.site_basis_jacobian(graph)
    ref_basis, ref_jac = LinearSiteModel.site_basis_jacobian(model, graph)
    torch.testing.assert_close(basis, ref_basis, rtol=0, atol=1e-10)
    scale = ref_jac.abs().max()
    assert scale > 0
    assert (jac - ref_jac).abs().max() <= 1e-12 * scale
