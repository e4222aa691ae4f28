"""Pair and one-body parts carried by an ACE part's kernel (the fold in mlff.stack) on the
calculators' numba route: exact where they share the radial basis (pairs) or the elements
(one-body), refused otherwise, and following every change of the parts that the model's
version counter sees."""

import numpy as np
import pytest
import torch
from ase import Atoms
from helpers import ACE_CUTOFF, ELEMENTS, STRUCTURES, _randomize, make_ace, make_onebody

from mlff import OneBody, PairModel, Stack, StackedCalculator, ZBLRepulsion
from mlff.evaluator import Evaluator
from mlff.stack import onebody_fold_energies, pair_fold_coefficients


def _pair(
    n_max: int = 4, repulsion: bool = False, cutoff: float = ACE_CUTOFF, seed: int = 21
) -> PairModel:
    """A pair part on the ACE part's radial basis; without a ZBL core unless asked."""
    pair = PairModel(ELEMENTS, cutoff=cutoff, n_max=n_max, repulsion=repulsion)
    _randomize(pair, seed=seed)
    return pair


def _stack(pair: PairModel, ace=None) -> Stack:
    return Stack([make_onebody(), pair, make_ace() if ace is None else ace])


def _kernels(model) -> list[str]:
    """Which parts run a kernel of their own on the numba route: the folded ones do not."""
    return [part.owner for part in Evaluator(model).parts]


def _results(model, atoms, backend="auto"):
    calc = StackedCalculator(model, backend=backend)
    properties = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
    calc.calculate(atoms, properties, ["positions", "numbers", "cell", "pbc"])
    return calc.results


def _assert_same(got, want):
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(got["energies"], want["energies"], rtol=0, atol=1e-10)
    assert np.abs(want["forces"]).max() > 1e-3
    np.testing.assert_allclose(got["forces"], want["forces"], rtol=0, atol=1e-10)
    if "stress" in want:
        np.testing.assert_allclose(got["stress"], want["stress"], rtol=0, atol=1e-12)


class _Refuse:
    """Stands in for a folded part's own kernel (``compiled``): calling it fails the test."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("a folded part ran its own kernel")


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_a_pair_on_the_ace_radial_basis_rides_in_the_ace_kernel(name):
    """Every test structure, three elements: the stack's results are the torch path's, and the
    pair part's own kernel never runs."""
    atoms = STRUCTURES[name]()
    model = _stack(_pair())
    model.parts[0].compiled = _Refuse()
    model.parts[1].compiled = _Refuse()
    got = _results(model, atoms)
    assert _kernels(model) == ["ACEModel"]
    _assert_same(got, _results(model, atoms, backend="torch"))


def test_the_fold_is_the_pair_energy_as_nu1_terms():
    """The ACE readout plus the fold coefficients gives ACE + pair (without the ZBL core) site
    energies on the torch path: the identity the kernel path relies on."""
    atoms = STRUCTURES["triclinic-sic"]()
    pair, ace = _pair(repulsion=False), make_ace()
    extra = pair_fold_coefficients(ace, pair)
    assert extra is not None and extra.abs().sum() > 0
    want = _results(Stack([pair, ace]), atoms, backend="torch")
    with torch.no_grad():
        ace.readout.weight.add_(extra)
    got = _results(Stack([ace]), atoms, backend="torch")
    _assert_same(got, want)


def _r0_changed(pair):
    with torch.no_grad():
        pair.radial.transform.r0.mul_(1.02)
    return pair


@pytest.mark.parametrize(
    "make_pair, why",
    [
        (lambda: _pair(n_max=6), "more radial functions than the ACE part"),
        (lambda: _pair(cutoff=ACE_CUTOFF + 0.5), "another cutoff"),
        (lambda: _r0_changed(_pair()), "another r0"),
    ],
)
def test_a_pair_on_another_radial_basis_runs_on_its_own(make_pair, why):
    atoms = STRUCTURES["triclinic-sic"]()
    model = _stack(make_pair())
    got = _results(model, atoms)
    assert _kernels(model) == ["PairModel", "ACEModel"], why
    _assert_same(got, _results(model, atoms, backend="torch"))


def test_an_ace_part_without_nu1_functions_takes_no_pair():
    ace = make_ace(max_degree={2: 6, 3: 7})
    assert pair_fold_coefficients(ace, _pair()) is None
    assert _kernels(_stack(_pair(), ace)) == ["PairModel", "ACEModel"]


def test_the_fold_follows_changes_of_the_parts():
    """θ set through the API, a state dict loaded, a dtype round trip, in-place edits declared
    with parameters_changed(), and an r0 edit that breaks the fold: each next call of the same
    calculator gives the torch route's results for the parts as they now are."""
    atoms = STRUCTURES["rattled-si"]()
    model = _stack(_pair())
    calc = StackedCalculator(model)

    def check(atol=1e-10):
        calc.calculate(atoms, ["energy", "forces", "stress"], ["positions"])
        want = _results(model, atoms, backend="torch")
        assert calc.results["energy"] == pytest.approx(want["energy"], rel=0, abs=atol)
        np.testing.assert_allclose(calc.results["forces"], want["forces"], rtol=0, atol=atol)
        return calc.results["energy"]

    before = check()
    assert _kernels(model) == ["ACEModel"]
    pair = model.parts[1]
    pair.set_linear_parameters(-3.0 * pair.get_linear_parameters())
    assert abs(check() - before) > 0.1
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["parts.2.readout.weight"][:, 0] += 0.05
    model.load_state_dict(state)
    check()
    model.float()
    with torch.no_grad():
        pair.readout.weight.mul_(2.0)
    pair.parameters_changed()
    model.double()
    # The torch path now reads its coupling coefficients rounded to float32; the kernel keeps
    # them exact, hence the looser tolerance (a stale θ would be off by tenths of an eV).
    check(atol=1e-8)
    assert _kernels(model) == ["ACEModel"]
    _r0_changed(pair)
    pair.parameters_changed()
    check(atol=1e-8)
    assert _kernels(model) == ["PairModel", "ACEModel"]


def test_an_in_place_edit_is_seen_only_once_declared():
    """The documented contract: tensors edited in place reach a calculator after
    parameters_changed(), not before."""
    atoms = STRUCTURES["rattled-si"]()
    model = _stack(_pair())
    calc = StackedCalculator(model)
    calc.calculate(atoms, ["energy"], ["positions"])
    before = calc.results["energy"]
    with torch.no_grad():
        model.parts[0].e0.add_(0.25)
    calc.calculate(atoms, ["energy"], ["positions"])
    assert calc.results["energy"] == before
    model.parts[0].parameters_changed()
    calc.calculate(atoms, ["energy", "forces"], ["positions"])
    assert calc.results["energy"] - before == pytest.approx(0.25 * len(atoms), abs=1e-10)
    assert _kernels(model) == ["ACEModel"]


def test_the_parts_of_a_stack_are_fixed():
    """A changed list of parts would leave calculators on the old one: refused, with the way
    out named."""
    model = _stack(_pair())
    with pytest.raises(TypeError, match="build a new Stack"):
        model.parts[1] = _pair(seed=33)
    with pytest.raises(TypeError, match="build a new Stack"):
        del model.parts[1]
    with pytest.raises(TypeError, match="build a new Stack"):
        model.parts.append(_pair())


def test_a_hard_collision_in_a_folded_pair_runs_its_zbl_core_on_its_own():
    """The folded pair's ZBL core has no ACE counterpart: it stays a part of its own on the
    numba route, and a collision inside it gives the torch route's results."""
    model = _stack(_pair(repulsion=True))
    core = model.parts[1].core_radius()
    atoms = Atoms("Si2", positions=[[0, 0, 0], [0.5 * core, 0, 0]], cell=[8, 8, 8], pbc=True)
    got = _results(model, atoms)
    assert _kernels(model) == ["ACEModel", "ZBL core"]
    assert got["energy"] > 1.0  # the core repels
    want = _results(model, atoms, backend="torch")
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-12)
    np.testing.assert_allclose(got["forces"], want["forces"], rtol=1e-12, atol=1e-10)


def test_a_zbl_core_added_to_a_folded_pair_is_checked():
    """A pair without a core folds; a core set on it afterwards (a new submodule: the model's
    version moves) joins the numba route as a part of its own."""
    model = _stack(_pair(repulsion=False))
    calc = StackedCalculator(model)
    atoms = STRUCTURES["rattled-si"]()
    calc.calculate(atoms, ["energy", "forces"], ["positions"])
    pair = model.parts[1]
    r0 = pair.radial.transform.r0
    pair.repulsion = ZBLRepulsion(pair.elements, 0.5 * r0, 0.75 * r0)
    core = pair.core_radius()
    hard = Atoms("Si2", positions=[[0, 0, 0], [0.5 * core, 0, 0]], cell=[8, 8, 8], pbc=True)
    calc.calculate(hard, ["energy", "forces"], ["positions", "numbers", "cell"])
    assert _kernels(model) == ["ACEModel", "ZBL core"]
    want = _results(model, hard, backend="torch")
    assert want["energy"] > 1.0
    assert calc.results["energy"] == pytest.approx(want["energy"], rel=1e-12)


def test_one_body_energies_ride_in_the_ace_kernel():
    """E0 in another element order (and of an element the ACE part lacks), added by the ACE
    kernel per centre species: every test structure, plus an atom with no neighbours (E0
    alone), gives the torch path's results, and the one-body part's own kernel never runs."""
    onebody = OneBody({"Si": -0.7, "O": -4.0, "H": -1.1, "C": -2.3})
    extra = onebody_fold_energies(make_ace(), onebody)
    torch.testing.assert_close(extra, torch.tensor([-1.1, -2.3, -0.7], dtype=torch.float64))
    lonely = Atoms(
        "CSiH", positions=[[0, 0, 0], [1.9, 0, 0], [30, 30, 30]], cell=[40, 40, 40], pbc=True
    )
    for atoms in [*(make() for make in STRUCTURES.values()), lonely]:
        model = Stack([onebody, make_ace()])
        model.parts[0].compiled = _Refuse()
        got = _results(model, atoms)
        assert _kernels(model) == ["ACEModel"]
        _assert_same(got, _results(model, atoms, backend="torch"))
    assert _results(model, lonely)["energy"] - _results(Stack([make_ace()]), lonely)[
        "energy"
    ] == pytest.approx(-1.1 - 2.3 - 0.7, abs=1e-12)


def test_a_one_body_part_without_every_ace_element_runs_on_its_own():
    """Folded, it would give an atom of the missing element an energy instead of refusing it."""
    onebody = OneBody({"C": -2.3, "Si": -0.7})
    assert onebody_fold_energies(make_ace(), onebody) is None
    model = Stack([onebody, make_ace()])
    atoms = STRUCTURES["rattled-si"]()
    got = _results(model, atoms)
    assert _kernels(model) == ["OneBody", "ACEModel"]
    _assert_same(got, _results(model, atoms, backend="torch"))


def test_a_folded_zbl_core_that_grows_in_place_is_checked():
    """An in-place edit of the core's radii, declared, that puts an edge inside the core
    reaches the next call."""
    model = _stack(_pair(repulsion=True))
    calc = StackedCalculator(model)
    atoms = Atoms("Si2", positions=[[0, 0, 0], [2.0, 0, 0]], cell=[8, 8, 8], pbc=True)
    calc.calculate(atoms, ["energy", "forces"], ["positions", "numbers", "cell"])
    soft = calc.results["energy"]
    assert model.parts[1].core_radius() < 2.0
    with torch.no_grad():
        model.parts[1].repulsion.r_outer.fill_(3.0)
        model.parts[1].repulsion.r_inner.fill_(2.5)
    model.parts[1].parameters_changed()
    calc.calculate(atoms, ["energy", "forces"], ["positions"])
    want = _results(model, atoms, backend="torch")
    assert calc.results["energy"] == pytest.approx(want["energy"], rel=1e-12)
    assert abs(calc.results["energy"] - soft) > 1e-6


def test_the_fold_follows_a_changed_radial_setting():
    """A transform setting changed on the pair part alone: its R_n are no longer the ACE
    part's, so the next call unfolds it."""
    atoms = STRUCTURES["rattled-si"]()
    model = _stack(_pair())
    calc = StackedCalculator(model)
    calc.calculate(atoms, ["energy", "forces"], ["positions"])
    assert _kernels(model) == ["ACEModel"]
    model.parts[1].radial.transform.a = 1.3
    model.parts[1].parameters_changed()
    calc.calculate(atoms, ["energy", "forces"], ["positions"])
    assert _kernels(model) == ["PairModel", "ACEModel"]
    _assert_same(calc.results, _results(model, atoms, backend="torch"))
