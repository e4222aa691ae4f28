import importlib.util

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from mlff.distill import check_teacher_elements, get_teacher, teacher_name


def test_named_and_instance_teachers():
    emt = get_teacher("emt")
    assert isinstance(emt, EMT) and teacher_name("EMT") == "emt"
    lj = LennardJones()
    assert get_teacher(lj) is lj and teacher_name(lj) == "LennardJones"
    with pytest.raises(ValueError, match="unknown teacher 'mace-xl'.*sevennet-0"):
        get_teacher("mace-xl")


def test_teacher_element_check_names_the_element():
    check_teacher_elements(EMT(), ["Cu", "Au"])
    with pytest.raises(ValueError, match="cannot do element\\(s\\) Si"):
        check_teacher_elements(EMT(), ["Cu", "Si"])
    check_teacher_elements(LennardJones(), ["Si"])  # says nothing: not checked here


@pytest.mark.skipif(importlib.util.find_spec("sevenn") is not None, reason="sevenn is installed")
def test_missing_extra_names_the_pip_extra():
    with pytest.raises(ImportError, match=r"pip install 'mlff\[sevennet\]'"):
        get_teacher("sevennet-0")


@pytest.mark.skipif(importlib.util.find_spec("sevenn") is None, reason="needs the sevennet extra")
def test_sevennet_teacher_on_an_8_atom_cell():
    teacher = get_teacher("sevennet-0")
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=0)
    atoms.calc = teacher
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    assert -45.0 < energy < -40.0  # about -5.4 eV/atom for diamond Si
    assert abs(forces.sum(0)).max() < 1e-4 and abs(forces).max() > 0.1
    assert atoms.get_stress().shape == (6,)
    check_teacher_elements(teacher, ["Si"])
    with pytest.raises(ValueError, match="cannot do element"):
        check_teacher_elements(teacher, ["Og"])


def test_sevennet_labels_a_batch_as_it_labels_one_structure(tmp_path):
    pytest.importorskip("sevenn")
    from mlff.distill import LabelStore

    teacher = get_teacher("sevennet-0")
    cells = []
    for k in range(3):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((1, 1, k + 1))
        atoms.rattle(0.05, seed=k)
        cells.append(atoms)
    labels = teacher.label_batch(cells)
    for atoms, label in zip(cells, labels, strict=True):
        probe = atoms.copy()
        probe.calc = teacher
        assert abs(label["energy"] - probe.get_potential_energy()) < 1e-3  # float32 model
        assert abs(label["forces"] - probe.get_forces()).max() < 1e-5
        assert abs(label["stress"] - probe.get_stress()).max() < 1e-7
    store = LabelStore(tmp_path / "labels.db", teacher="sevennet-0")
    items = [(a, "rattle", {"k": k}) for k, a in enumerate(cells)]
    assert store.label(items, teacher, batch=2) == 3 and len(store) == 3


def test_a_teacher_batch_needs_a_teacher_that_labels_batches(tmp_path, capsys):
    from mlff.cli import main

    out = tmp_path / "run"
    code = main(
        ["distill", "--teacher", "emt", "--structure", "Cu-fcc", "--teacher-batch", "4",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 2 and not out.exists()
    assert "teacher_batch = 4 needs a teacher that labels batches" in capsys.readouterr().err
