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
