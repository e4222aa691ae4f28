"""ExtrapolationGuard on real ASE MD with an EMT-trained Cu student."""

import warnings

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read
from ase.md.langevin import Langevin
from emt_data import emt_cu_dataset

from mlff import ACEModel, Committee, OneBody, PairModel, SiteCalculator, Stack
from mlff.fitting import BLR, estimate_e0, fit
from mlff.md import ExtrapolationError, ExtrapolationGuard, ExtrapolationWarning, GradeCheck
from mlff.md.guard import DEFAULT_INTERVAL, DEFAULT_THRESHOLD
from mlff.thermal import thermalize


@pytest.fixture(scope="module")
def student():
    """An EMT Cu student (rattled and strained fcc cells, slabs, vacancies) and its committee."""
    train = emt_cu_dataset(seed=0, n_each=3)
    model = Stack(
        [
            OneBody(estimate_e0(train)),
            PairModel(["Cu"], cutoff=5.0, n_max=6, repulsion=True),
            ACEModel(["Cu"], cutoff=5.0, n_max=6, max_degree={1: 6, 2: 9, 3: 9}),
        ]
    )
    result = fit(model, train, solver=BLR())
    return result.model, Committee.from_fit(result, train, size=16, seed=0)


def _langevin(student, temperature, scale=1.0, seed=0):
    model, committee = student
    atoms = bulk("Cu", "fcc", a=3.61 * scale, cubic=True).repeat((2, 2, 2))
    atoms.calc = SiteCalculator(model, committee=committee)
    rng = np.random.default_rng(seed)
    thermalize(atoms, temperature, rng=rng)
    return Langevin(
        atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False
    )


def test_the_guard_stays_quiet_at_the_training_temperature(student):
    dyn = _langevin(student, 300)
    guard = ExtrapolationGuard(dyn, interval=10)
    dyn.run(200)
    assert dyn.nsteps == 200 and guard.excursions == 0
    assert [c.step for c in guard.history] == list(range(0, 201, 10))
    assert 0 < guard.max_grade < DEFAULT_THRESHOLD and guard.grades.shape == (21,)
    assert isinstance(guard.history[0], GradeCheck) and "checks=21" in repr(guard)


def test_the_guard_stops_a_run_heated_far_beyond_the_training_set(student, tmp_path):
    dyn = _langevin(student, 6000)
    frames = tmp_path / "extrapolating.extxyz"
    guard = ExtrapolationGuard(dyn, interval=5, frames=frames)
    with pytest.raises(ExtrapolationError) as caught:
        dyn.run(400)
    err = caught.value
    assert isinstance(err, RuntimeError) and dyn.nsteps == err.step < 400
    assert err.grade > DEFAULT_THRESHOLD == err.threshold and err.frames == frames
    message = str(err)
    for part in (f"step {err.step}", f"{err.grade:.3g}", f"atom {err.atom}", "threshold 1"):
        assert part in message
    assert str(frames) in message
    assert guard.history[-1] == (err.step, err.grade, err.atom)
    assert all(c.grade <= DEFAULT_THRESHOLD for c in guard.history[:-1])
    (frame,) = read(frames, index=":")
    grade = frame.arrays["extrapolation_grade"]
    assert grade.shape == (32,) and int(np.argmax(grade)) == err.atom
    assert grade.max() == pytest.approx(err.grade) and frame.info["step"] == err.step
    assert np.allclose(frame.positions, dyn.atoms.positions)


def test_a_compressed_cell_is_stopped_before_the_first_step(student, tmp_path):
    dyn = _langevin(student, 300, scale=0.9)
    ExtrapolationGuard(dyn, threshold=5.0, frames=tmp_path / "f.extxyz")
    with pytest.raises(ExtrapolationError, match="at step 0") as caught:
        dyn.run(10)
    assert caught.value.grade > 5.0 and dyn.nsteps == 0


def test_warn_mode_warns_once_per_excursion_and_the_run_goes_on(student, tmp_path):
    dyn = _langevin(student, 300, scale=0.9)
    frames = tmp_path / "f.extxyz"
    guard = ExtrapolationGuard(dyn, threshold=2.0, interval=5, action="warn", frames=frames)
    with pytest.warns(ExtrapolationWarning, match="exceeds the threshold 2") as caught:
        dyn.run(30)
    assert len([w for w in caught if issubclass(w.category, ExtrapolationWarning)]) == 1
    assert dyn.nsteps == 30 and len(guard.history) == 7 and guard.excursions == 1
    assert all(c.grade > 2.0 for c in guard.history)
    assert len(read(frames, index=":")) == 1
    # Back inside the domain and out again: a second excursion, a second warning and frame.
    atoms = dyn.atoms
    compressed = atoms.get_cell().copy()
    atoms.set_cell(compressed / 0.9, scale_atoms=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert guard.check().grade <= 2.0
    atoms.set_cell(compressed, scale_atoms=True)
    with pytest.warns(ExtrapolationWarning):
        guard.check()
    assert guard.excursions == 2 and len(read(frames, index=":")) == 2
    assert guard.last_frame is not None and "extrapolation_grade" in guard.last_frame.arrays


def test_bad_arguments_are_refused_naming_the_value(student, tmp_path):
    dyn = _langevin(student, 300)
    for kwargs, message in [
        ({"threshold": 0}, "threshold = 0"),
        ({"threshold": -1.0}, "threshold = -1.0"),
        ({"threshold": float("nan")}, "threshold = nan"),
        ({"threshold": True}, "threshold = True"),
        ({"threshold": "1"}, "threshold = '1'"),
        ({"interval": 0}, "interval = 0"),
        ({"interval": 2.5}, "interval = 2.5"),
        ({"action": "halt"}, "action = 'halt'; accepted one of 'stop', 'warn'"),
        ({"frames": tmp_path / "missing" / "f.extxyz"}, "does not exist"),
        ({"frames": tmp_path}, "is a directory"),
        ({"frames": 3}, "frames = 3"),
    ]:
        with pytest.raises(ValueError, match=message):
            ExtrapolationGuard(dyn, **kwargs)
    with pytest.raises(ValueError, match="ASE dynamics object"):
        ExtrapolationGuard(dyn.atoms)
    model, committee = student
    for calc, message in [
        (SiteCalculator(model), "has no committee"),
        (SiteCalculator(model, committee=committee.thetas), "committee without a scale"),
        (EMT(), "EMT does not implement extrapolation_grade"),
        (None, "no calculator"),
    ]:
        dyn.atoms.calc = calc
        with pytest.raises(ValueError, match=message):
            ExtrapolationGuard(dyn)
    assert DEFAULT_INTERVAL >= 1 and not dyn.observers
