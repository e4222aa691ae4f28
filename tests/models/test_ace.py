import numpy as np
import pytest
import torch
from helpers import ELEMENTS, STRUCTURES, make_ace
from scipy.spatial.transform import Rotation

from mlff import ACEModel, build_graph
from mlff.models.ace_basis import coupling_tensor


def test_default_si_basis_is_a_few_hundred_functions_up_to_body_order_four():
    model = ACEModel(elements=["Si"], cutoff=5.0)
    orders = {f.order for f in model.basis_spec}
    assert 200 <= model.n_basis <= 600
    assert orders == {1, 2, 3}
    assert model.length_basis() == model.n_basis
    f = next(f for f in model.basis_spec if f.order == 3 and len(set(f.ls)) > 1)
    assert str(f).startswith("ν=3: Si(n=") and "⊗" in str(f)
    assert "correlation order 3" in model.describe_basis()


def test_basis_follows_total_degree_rule_and_parity():
    model = make_ace()
    for f in model.basis_spec:
        assert f.degree == pytest.approx(sum(n + model.w_l * l for _, n, l in f.factors))
        assert f.degree <= model.max_degree[f.order] + 1e-9
        assert sum(f.ls) % 2 == 0
        assert list(f.factors) == sorted(
            f.factors, key=lambda x: (ELEMENTS.index(x[0]), x[1], x[2])
        )
    assert {f.order for f in model.basis_spec} == {1, 2, 3, 4}
    cross = [f for f in model.basis_spec if len({z for z, _, _ in f.factors}) > 1]
    assert cross, "a multi-element basis must couple different neighbour elements"


def _reference_invariants(model, graph):
    """Each function contracted one at a time, straight from its spec."""
    species = model.species(graph)
    a = model.atomic_basis(graph, species)
    zindex = {e: s for s, e in enumerate(model.elements)}
    columns = []
    for f in model.basis_spec:
        xs = [a[l][zindex[z] * model.n_max + n - 1] for z, n, l in f.factors]  # (N, 2l+1)
        tensor = coupling_tensor(f.ls, f.coupling)
        letters = "abcd"[: f.order]
        expr = letters + "," + ",".join("n" + c for c in letters) + "->n"
        columns.append(torch.einsum(expr, tensor, *xs) if f.order > 1 else xs[0][:, 0])
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("name", ["triclinic-sic", "methane", "si-slab"])
def test_batched_invariants_match_one_at_a_time_contraction(name):
    model = make_ace()
    graph = build_graph(STRUCTURES[name](), model.cutoff)
    fast, _ = model.features(graph)
    reference = _reference_invariants(model, graph)
    assert fast.shape == reference.shape == (graph.n_atoms, model.n_basis)
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-12)
    assert fast.abs().max() > 0


def test_invariants_are_rotation_invariant():
    model = make_ace()
    atoms = STRUCTURES["triclinic-sic"]()
    rotated = atoms.copy()
    rot = Rotation.random(random_state=1).as_matrix()
    rotated.set_cell(atoms.cell.array @ rot.T)
    rotated.positions = atoms.positions @ rot.T
    b0, _ = model.features(build_graph(atoms, model.cutoff))
    b1, _ = model.features(build_graph(rotated, model.cutoff))
    torch.testing.assert_close(b1, b0, rtol=1e-9, atol=1e-10)


def test_repeated_factor_couplings_are_pruned_to_independent_ones():
    """Degree-4 invariants of vectors, where the count is known in closed form."""
    model = ACEModel(["Si"], cutoff=4.0, n_max=2, l_max=2, max_degree={4: 20})
    by_factors = {}
    for f in model.basis_spec:
        by_factors.setdefault(f.factors, []).append(f.coupling)
    u, v = ("Si", 1, 1), ("Si", 2, 1)
    # One vector u: only |u|⁴ (candidates L = 0, 1, 2).
    assert len(by_factors[(u,) * 4]) == 1
    # One traceless symmetric matrix M (l = 2): tr(M²)² only, since tr(M⁴) = tr(M²)²/2.
    assert len(by_factors[(("Si", 1, 2),) * 4]) == 1
    # Two vectors u, u, v, v: |u|²|v|² and (u·v)²; the L = 1 coupling (u×u = 0) is dropped.
    assert len(by_factors[(u, u, v, v)]) == 2
    # Four distinct factors (l = 1, 2, 1, 2) keep all three couplings L = 1, 2, 3.
    distinct = (("Si", 1, 1), ("Si", 1, 2), ("Si", 2, 1), ("Si", 2, 2))
    assert by_factors[distinct] == [(1,), (2,), (3,)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_degree": {5: 10}}, "accepted 1-4"),
        ({"max_degree": {1: 0.5}}, "admits no basis function"),
        ({"n_max": 0}, "n_max >= 1"),
        ({"l_max": -1}, "l_max >= 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ACEModel(["Si"], **kwargs)


def test_energy_and_forces_are_smooth_as_a_neighbour_crosses_the_cutoff():
    from ase import Atoms

    from mlff import SiteCalculator

    model = make_ace()
    rc = model.cutoff
    atoms = Atoms("Si3", positions=[[0, 0, 0], [-2.3, 0.4, 0], [rc, 0, 0]])
    atoms.calc = SiteCalculator(model)
    beyond = None
    samples = {}
    for delta in [2e-2, 1e-2, 1e-3, -1e-3]:
        atoms.positions[2, 0] = rc - delta
        samples[delta] = (atoms.get_potential_energy(), atoms.get_forces().copy())
    beyond = samples[-1e-3]
    # Past the cutoff atom 2 is invisible: no force on it.
    assert not beyond[1][2].any()
    diffs = {
        d: (abs(samples[d][0] - beyond[0]), np.abs(samples[d][1] - beyond[1]).max())
        for d in (2e-2, 1e-2, 1e-3)
    }
    assert diffs[2e-2][0] > 1e-10, "the test needs an energy that feels the crossing neighbour"
    # Energy ~ δ³ and forces ~ δ²: halving δ shrinks them by ≈ 8 and ≈ 4.
    assert diffs[1e-2][0] < diffs[2e-2][0] / 5 and diffs[1e-2][1] < diffs[2e-2][1] / 3
    assert diffs[1e-3][0] < 1e-6 * max(1.0, diffs[2e-2][0] * 1e4)
