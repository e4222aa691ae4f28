import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.distill import LabelStore, structure_hash


def _cells(n: int):
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=k)
        out.append((atoms, "rattle", {"generator": "rattle", "seed": k}))
    return out


def test_labels_are_stored_with_teacher_hash_and_metadata(tmp_path):
    store = LabelStore(tmp_path / "labels.db", teacher="emt")
    calls = store.label(_cells(5), EMT())
    assert calls == 5 and len(store) == 5
    stored = store.configurations()
    reference = _cells(5)
    for atoms, (original, _, meta) in zip(stored, reference, strict=True):
        assert structure_hash(atoms) == structure_hash(original)
        original.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(
            original.get_potential_energy(), abs=1e-12
        )
        np.testing.assert_allclose(atoms.get_forces(), original.get_forces(), atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(), original.get_stress(), atol=1e-12)
        assert atoms.info["config_type"] == "rattle" and atoms.info["meta"] == meta


def test_rerun_never_labels_twice_and_duplicates_are_refused(tmp_path):
    store = LabelStore(tmp_path / "labels.db", teacher="emt")
    assert store.label(_cells(4), EMT()) == 4
    again = LabelStore(tmp_path / "labels.db", teacher="emt")
    assert again.label(_cells(6), EMT()) == 2
    assert len(again) == 6
    atoms = again.configurations()[0]
    assert again.add(atoms, "rattle") is False
    assert len(again) == 6
    # Another teacher's labels are separate.
    other = LabelStore(tmp_path / "labels.db", teacher="other")
    assert len(other) == 0 and other.label(_cells(2), EMT()) == 2


def test_budget_limits_teacher_calls(tmp_path):
    store = LabelStore(tmp_path / "labels.db", teacher="emt")
    assert store.label(_cells(10), EMT(), budget=3) == 3
    assert len(store) == 3


def test_hash_sees_positions_cell_and_numbers():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    base = structure_hash(atoms)
    moved = atoms.copy()
    moved.positions[0, 0] += 1e-3
    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.001)
    swapped = atoms.copy()
    swapped.numbers[0] = 28
    assert (
        len({base, structure_hash(moved), structure_hash(strained), structure_hash(swapped)}) == 4
    )
    assert structure_hash(atoms.copy()) == base


_SLOW_LABELLER = textwrap.dedent(
    """
    import sys, time
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from mlff.distill import LabelStore

    class SlowEMT(EMT):
        def calculate(self, *args, **kwargs):
            time.sleep(0.15)
            super().calculate(*args, **kwargs)

    cells = []
    for k in range(40):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=k)
        cells.append((atoms, "rattle", {"seed": k}))
    LabelStore(sys.argv[1], teacher="emt").label(cells, SlowEMT())
    """
)


def test_sigkill_mid_run_loses_nothing_finished_and_resumes_without_duplicates(tmp_path):
    script = tmp_path / "label.py"
    script.write_text(_SLOW_LABELLER)
    db = tmp_path / "labels.db"
    proc = subprocess.Popen([sys.executable, str(script), str(db)])
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        if db.exists() and len(LabelStore(db, teacher="emt")) >= 5:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(LabelStore(db, teacher="emt"))
    assert 5 <= done < 40, f"the kill should land mid-run, after {done} labels"
    subprocess.run([sys.executable, str(script), str(db)], check=True, timeout=120)
    store = LabelStore(db, teacher="emt")
    hashes = [structure_hash(a) for a in store.configurations()]
    assert len(store) == 40 and len(set(hashes)) == 40
    seeds = sorted(a.info["meta"]["seed"] for a in store.configurations())
    assert seeds == list(range(40))


_ADD_ONE = textwrap.dedent(
    """
    import sys
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from mlff.distill import LabelStore

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.calc = EMT()
    atoms.get_forces()
    assert LabelStore(sys.argv[1], teacher="emt").add(atoms, "bulk")
    """
)


def test_lock_file_left_by_a_killed_writer_does_not_block_the_store(tmp_path):
    # A writer killed inside ASE's lock leaves "<db>.lock" behind, which ASE waits on forever.
    db = tmp_path / "labels.db"
    LabelStore(db, teacher="emt")
    (tmp_path / "labels.db.lock").write_text("")
    script = tmp_path / "add.py"
    script.write_text(_ADD_ONE)
    subprocess.run([sys.executable, str(script), str(db)], check=True, timeout=60)
    assert len(LabelStore(db, teacher="emt")) == 1


# ---------------------------------------------------------------------------------------------
# Batched labelling through a torch-sim teacher


@pytest.fixture(scope="module")
def torchsim_teacher_run(tmp_path_factory):
    """A small EMT-fitted Cu student saved as a run directory: the torch-sim teacher."""
    pytest.importorskip("torch_sim")
    from emt_data import emt_cu_dataset

    from mlff import ACEModel, OneBody, PairModel, Stack, save_model
    from mlff.fitting import estimate_e0, fit

    train = emt_cu_dataset(seed=0, n_each=2)
    model = Stack(
        [
            OneBody(estimate_e0(train)),
            PairModel(["Cu"], cutoff=4.5, n_max=4, repulsion=True),
            ACEModel(["Cu"], cutoff=4.5, n_max=4, max_degree={1: 4, 2: 6}),
        ]
    )
    run = tmp_path_factory.mktemp("teacher")
    save_model(fit(model, train).model, run / "student.json")
    return run


def test_batched_labels_equal_one_by_one_labels(torchsim_teacher_run, tmp_path):
    from mlff import DistilledCalculator
    from mlff.distill import TorchSimTeacher
    from mlff.torchsim import MlffModel

    teacher = TorchSimTeacher(MlffModel(torchsim_teacher_run), name="cu-student")
    cells = _cells(10)
    store = LabelStore(tmp_path / "labels.db", teacher="cu-student")
    assert store.label(cells, teacher, batch=4) == 10
    assert store.label(cells, teacher, batch=4) == 0  # nothing twice
    reference = DistilledCalculator(checkpoint_path=torchsim_teacher_run)
    for stored in store.configurations():
        probe = stored.copy()
        probe.calc = reference
        assert abs(stored.get_potential_energy() - probe.get_potential_energy()) < 1e-10
        np.testing.assert_allclose(stored.get_forces(), probe.get_forces(), atol=1e-10)
        np.testing.assert_allclose(stored.get_stress(), probe.get_stress(), atol=1e-12)
    with pytest.raises(ValueError, match="batch = 4 needs a teacher that labels batches"):
        store.label(_cells(12), EMT(), batch=4)


_BATCH_LABELLER = textwrap.dedent(
    """
    import sys, time
    from ase.build import bulk
    from mlff.distill import LabelStore, TorchSimTeacher
    from mlff.torchsim import MlffModel

    class SlowTeacher(TorchSimTeacher):
        def label_batch(self, structures):
            time.sleep(0.3)
            return super().label_batch(structures)

    cells = []
    for k in range(40):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=k)
        cells.append((atoms, "rattle", {"seed": k}))
    teacher = SlowTeacher(MlffModel(sys.argv[2]), name="cu-student")
    LabelStore(sys.argv[1], teacher="cu-student").label(cells, teacher, batch=8)
    """
)


def test_sigkill_mid_batch_loses_at_most_that_batch_and_duplicates_nothing(
    torchsim_teacher_run, tmp_path
):
    script = tmp_path / "label.py"
    script.write_text(_BATCH_LABELLER)
    db = tmp_path / "labels.db"
    command = [sys.executable, str(script), str(db), str(torchsim_teacher_run)]
    proc = subprocess.Popen(command)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.1)
        if db.exists() and len(LabelStore(db, teacher="cu-student")) >= 8:
            break
    os.kill(proc.pid, signal.SIGKILL)  # while the next batch is in the teacher
    proc.wait()
    done = len(LabelStore(db, teacher="cu-student"))
    assert 8 <= done < 40, f"the kill should land mid-run, after {done} labels"
    subprocess.run(command, check=True, timeout=300)
    store = LabelStore(db, teacher="cu-student")
    hashes = [structure_hash(a) for a in store.configurations()]
    assert len(store) == 40 and len(set(hashes)) == 40
    assert sorted(a.info["meta"]["seed"] for a in store.configurations()) == list(range(40))
