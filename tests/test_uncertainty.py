"""The committee's per-atom spread, the extrapolation grade, and the committee in checkpoints."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from emt_data import emt_cu_dataset
from safetensors.torch import save_file

from mlff import (
    ACEModel,
    Committee,
    DistilledCalculator,
    OneBody,
    PairModel,
    SiteCalculator,
    Stack,
    load_checkpoint,
    load_committee,
    load_model,
    rank_candidates,
    save_model,
)
from mlff.fitting import BLR, estimate_e0, fit
from mlff.graph import build_graph
from mlff.uncertainty import MAX_COMMITTEE_SIZE, candidate_grades, training_spreads


@pytest.fixture(scope="module")
def cu():
    """An EMT Cu student fitted by BLR, its training set and a 16-member committee."""
    train = emt_cu_dataset(seed=0, n_each=3)
    model = Stack(
        [
            OneBody(estimate_e0(train)),
            PairModel(["Cu"], cutoff=5.0, n_max=6, repulsion=True),
            ACEModel(["Cu"], cutoff=5.0, n_max=6, max_degree={1: 6, 2: 9, 3: 9}),
        ]
    )
    result = fit(model, train, solver=BLR())
    return result, train, Committee.from_fit(result, train, size=16, seed=0)


def _crystal(scale=1.0, rattle=0.05, seed=3):
    atoms = bulk("Cu", "fcc", a=3.61 * scale, cubic=True).repeat((2, 2, 2))
    atoms.rattle(rattle, seed=seed)
    return atoms


def test_grade_is_at_most_one_on_the_training_set_and_large_out_of_domain(cu):
    result, train, committee = cu
    grades = np.concatenate([committee.grade(result.model, atoms)[1] for atoms in train])
    assert grades.max() == pytest.approx(1.0, abs=1e-12)  # the scale is the training maximum
    spreads = training_spreads(result.model, committee.thetas, train)
    assert committee.scale == spreads.max()
    std, grade = committee.grade(result.model, _crystal())
    assert std.shape == grade.shape == (32,) and np.allclose(grade, std / committee.scale)
    assert grade.max() < 1.0  # a gently rattled crystal is inside the training set
    assert committee.grade(result.model, _crystal(scale=0.85))[1].max() > 10.0


def test_committee_validates_its_arguments(cu):
    result, _, committee = cu
    p = result.model.length_basis()
    cases = [
        (np.zeros(p), 1.0, "shape"),
        (np.zeros((1, p)), 1.0, "2 <= K"),
        (np.zeros((MAX_COMMITTEE_SIZE + 1, 2)), 1.0, "2 <= K"),
        (np.full((3, p), np.nan), 1.0, "NaN"),
        (np.array([["a", "b"], ["c", "d"]]), 1.0, "real"),
        ([[1.0, 2.0], [3.0, 4.0]], 1.0, "real"),
        (np.zeros((3, p)), 0.0, "scale"),
        (np.zeros((3, p)), float("inf"), "scale"),
        (np.zeros((3, p)), True, "scale"),
        (np.zeros((3, p)), "1", "scale"),
    ]
    for thetas, scale, message in cases:
        with pytest.raises(ValueError, match=message):
            Committee(thetas, scale)
    with pytest.raises(ValueError, match=f"P = 5 parameters per member but the model has {p}"):
        Committee(np.zeros((3, 5)), 1.0).check_model(result.model)
    with pytest.raises(ValueError, match="size"):
        Committee.from_fit(result, [], size=1)
    # Immutable and a copy of the caller's array.
    thetas = result.committee(4, seed=1)
    c = Committee(thetas, 1.0)
    thetas[:] = 0.0
    assert c.thetas.any() and not c.thetas.flags.writeable
    assert "K=16" in repr(committee) and committee == Committee(committee.thetas, committee.scale)


def test_energies_std_and_grade_equal_a_direct_computation_with_the_members(cu):
    result, _, committee = cu
    atoms = _crystal(rattle=0.1, seed=5)
    calc = SiteCalculator(result.model, committee=committee)
    std = calc.get_property("energies_std", atoms)
    grade = calc.get_property("extrapolation_grade", atoms)
    # K separate models, one per member: their site energies' spread per atom.
    member_model = copy.deepcopy(result.model)
    sites = []
    for theta in committee.thetas:
        member_model.set_linear_parameters(torch.from_numpy(theta.copy()))
        probe = atoms.copy()
        probe.calc = SiteCalculator(member_model)
        sites.append(probe.get_potential_energies())
    assert np.allclose(std, np.std(sites, axis=0), rtol=1e-8, atol=1e-12)
    assert np.array_equal(grade, std / committee.scale)
    assert calc.get_property("energy_std", atoms) == pytest.approx(
        np.std(np.sum(sites, axis=1)), rel=1e-8
    )
    graph = build_graph(atoms, result.model.cutoff)
    assert np.allclose(committee.site_std(result.model, graph), std, rtol=1e-12)


def test_grade_after_an_md_step_does_not_rerun_the_energy_path(cu):
    result, _, committee = cu
    atoms = _crystal()
    calc = SiteCalculator(result.model, committee=committee)
    atoms.calc = calc
    forces = atoms.get_forces()
    calc.results["energy"] = 12345.0  # a sentinel: any rerun of the energy path overwrites it
    grade = atoms.calc.get_property("extrapolation_grade", atoms)
    assert calc.results["energy"] == 12345.0 and calc.results["forces"] is not None
    assert np.array_equal(calc.results["forces"], forces)
    assert {"energies_std", "energy_std"} <= set(calc.results) and grade.shape == (32,)
    assert "forces_std" not in calc.results  # the Jacobian is computed only when asked
    # Asked alone on new positions: the spreads only, no energy.
    atoms.rattle(0.01, seed=9)
    calc.calculate(atoms, ["extrapolation_grade"], ["positions"])
    assert "energy" not in calc.results and "forces" not in calc.results
    assert "extrapolation_grade" in calc.results
    # The energy then still comes when asked, with the grade kept.
    assert atoms.get_potential_energy() != 12345.0 and "extrapolation_grade" in calc.results


def test_bare_thetas_give_spreads_but_no_grade(cu):
    result, _, committee = cu
    atoms = _crystal()
    calc = SiteCalculator(result.model, committee=committee.thetas)
    assert calc.committee_scale is None
    assert calc.get_property("energies_std", atoms).shape == (32,)
    with pytest.raises(PropertyNotImplementedError, match="Committee"):
        calc.get_property("extrapolation_grade", atoms)
    with pytest.raises(PropertyNotImplementedError, match="need a committee"):
        SiteCalculator(result.model).get_property("extrapolation_grade", atoms)
    with pytest.raises(ValueError, match="parameters per member"):
        SiteCalculator(result.model, committee=Committee(np.zeros((2, 3)), 1.0))


def test_candidates_rank_by_their_largest_grade(cu):
    result, _, committee = cu
    candidates = [
        (_crystal(), "test", {"name": "near"}),
        (_crystal(scale=0.88), "test", {"name": "compressed"}),
        (_crystal(rattle=0.2), "test", {"name": "hot"}),
    ]
    grades = candidate_grades(result.model, committee, candidates)
    assert grades.shape == (3,) and grades[1] > grades[2] > grades[0]
    ranking = rank_candidates(result.model, committee, [c[0] for c in candidates])
    assert [k for k, _ in ranking] == [1, 2, 0] and ranking[0][1] == grades[1]
    with pytest.raises(TypeError, match="candidate"):
        candidate_grades(result.model, committee, ["not atoms"])


# -- checkpoints ----------------------------------------------------------------------------------


@pytest.fixture
def saved(cu, tmp_path):
    result, _, committee = cu
    path = save_model(result.model, tmp_path / "run" / "student", committee=committee)
    return path


def test_committee_round_trips_exactly_and_leaves_the_model_file_as_it_was(cu, saved, tmp_path):
    result, _, committee = cu
    again = load_committee(saved.parent)
    assert again == committee and again.scale == committee.scale
    assert np.array_equal(again.thetas, committee.thetas)
    model, _, also = load_checkpoint(saved)
    assert also == committee and torch.equal(
        model.get_linear_parameters(), result.model.get_linear_parameters()
    )
    document = json.loads(saved.read_text())
    assert document["format_version"] == 1 and document["committee"]["size"] == 16
    # The model's weights are the file a save without a committee writes, so an older loader,
    # which ignores the unknown "committee" key, reads the model as before.
    plain = save_model(result.model, tmp_path / "plain" / "student")
    assert json.loads(plain.read_text())["weights"] == document["weights"]
    assert load_committee(plain) is None
    assert torch.equal(
        load_model(saved)[0].get_linear_parameters(), result.model.get_linear_parameters()
    )


def test_saving_again_without_a_committee_drops_it_and_its_file(cu, saved):
    result, _, committee = cu
    names = {p.name for p in saved.parent.iterdir()}
    assert any(n.startswith("student.committee.") for n in names) and len(names) == 3
    leftover = saved.parent / f"student.committee.{'a' * 12}.safetensors"
    leftover.write_text("x")
    save_model(result.model, saved)
    names = {p.name for p in saved.parent.iterdir()}
    assert len(names) == 2 and not any("committee" in n for n in names)
    assert load_committee(saved) is None


def test_save_refuses_a_committee_of_another_model_before_touching_the_disk(cu, tmp_path):
    result, _, _ = cu
    with pytest.raises(ValueError, match="would refuse.*parameters per member"):
        save_model(result.model, tmp_path / "student", committee=Committee(np.ones((2, 3)), 1.0))
    with pytest.raises(TypeError, match="Committee"):
        save_model(result.model, tmp_path / "student", committee=np.ones((2, 3)))
    assert not list(tmp_path.iterdir())


def _tamper(saved, change):
    document = json.loads(saved.read_text())
    change(document, saved.parent)
    saved.write_text(json.dumps(document))


def _other_shape(document, run):
    name = document["committee"]["weights"]
    k = document["committee"]["size"]
    p = len(np.asarray(load_committee_thetas(run / name))[0])
    save_file({"thetas": torch.zeros(k, p + 1, dtype=torch.float64)}, str(run / name))


def load_committee_thetas(path):
    from safetensors.torch import load_file

    return load_file(str(path))["thetas"].numpy()


@pytest.mark.parametrize(
    "change, error, message",
    [
        (_other_shape, ValueError, r"does not fit the model.*has shape \(16, 78\)"),
        (lambda d, r: d["committee"].update(size=8), ValueError, r"has shape \(16, 77\)"),
        (lambda d, r: d["committee"].update(size=1), ValueError, "committee.size"),
        (lambda d, r: d["committee"].update(size=10**9), ValueError, "committee.size"),
        (lambda d, r: d["committee"].update(scale=-1.0), ValueError, "committee.scale"),
        (lambda d, r: d["committee"].update(scale="big"), ValueError, "committee.scale"),
        (lambda d, r: d["committee"].update(weights="../x.safetensors"), ValueError, "plain"),
        (
            lambda d, r: d["committee"].update(weights="gone.safetensors"),
            FileNotFoundError,
            "committee.weights",
        ),
        (lambda d, r: d["committee"].pop("scale"), ValueError, "lacks"),
        (lambda d, r: d["committee"].update(extra=1), ValueError, "unknown keys"),
        (lambda d, r: d.update(committee=[1, 2]), ValueError, "JSON object"),
        (
            lambda d, r: save_file(
                {"thetas": torch.full((16, 77), float("nan"), dtype=torch.float64)},
                str(r / d["committee"]["weights"]),
            ),
            ValueError,
            "NaN",
        ),
        (
            lambda d, r: save_file(
                {"other": torch.zeros(16, 77, dtype=torch.float64)},
                str(r / d["committee"]["weights"]),
            ),
            ValueError,
            "missing tensors",
        ),
    ],
)
def test_a_tampered_committee_is_refused_naming_what_is_wrong(saved, change, error, message):
    _tamper(saved, change)
    with pytest.raises(error, match=message):
        load_committee(saved)
    load_model(saved)  # the model itself still loads: load_model does not read the committee


def test_distilled_calculator_with_uncertainty(cu, saved, tmp_path):
    _, _, committee = cu
    calc = DistilledCalculator(checkpoint_path=saved.parent, uncertainty=True)
    atoms = _crystal(scale=0.9)
    atoms.calc = calc
    atoms.get_forces()
    expected = committee.grade(calc.model, atoms)[1]
    assert np.allclose(calc.get_property("extrapolation_grade", atoms), expected, rtol=1e-10)
    plain = DistilledCalculator(checkpoint_path=saved.parent)
    assert plain.committee is None
    shutil.copytree(saved.parent, tmp_path / "bare")
    result = cu[0]
    save_model(result.model, tmp_path / "bare" / "student")
    with pytest.raises(ValueError, match=r"bare/student.json has no committee.*save_model"):
        DistilledCalculator(checkpoint_path=tmp_path / "bare", uncertainty=True)
    with pytest.raises(ValueError, match="uncertainty must be True or False"):
        DistilledCalculator(checkpoint_path=saved, uncertainty="yes")
    with pytest.raises(ValueError, match="not both"):
        DistilledCalculator(checkpoint_path=saved, uncertainty=True, committee=committee)


def test_a_save_that_dies_before_the_json_keeps_the_previous_committee(cu, saved, monkeypatch):
    import mlff.io

    result, train, committee = cu
    real = mlff.io.atomic_write

    def die_on_json(path, write):
        if path.suffix == ".json":
            raise KeyboardInterrupt("killed before the JSON")
        real(path, write)

    monkeypatch.setattr(mlff.io, "atomic_write", die_on_json)
    other = Committee.from_fit(result, train, size=4, seed=7)
    with pytest.raises(KeyboardInterrupt):
        save_model(result.model, saved, committee=other)
    assert len(list(saved.parent.glob("student.committee.*"))) == 2  # the new one, unnamed
    assert load_committee(saved) == committee
    monkeypatch.setattr(mlff.io, "atomic_write", real)
    save_model(result.model, saved, committee=other)
    assert len(list(saved.parent.glob("student.committee.*"))) == 1
    assert load_committee(saved) == other
