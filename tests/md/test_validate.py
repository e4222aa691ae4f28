"""validate_nve: PASS for EMT copper, FAIL for calculators that break energy conservation or
pull atoms together, the files it writes, and refusal of bad settings."""

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT
from md_helpers import ConstantForce, ScaledForces, copper

from mlff.md.validate import ValidationThresholds, validate_nve
from mlff.testing import HarmonicCrystal

# Short CI versions of the default run (100 ps at 0.5 fs): 1 ps of Bussi equilibration, then
# 0.6 ps of NVE at 2 fs (copper is heavy; EMT conserves energy well at this step).
SHORT = dict(
    duration_ps=0.6, timestep_fs=2.0, temperature_K=300.0, equilibration_ps=1.0, sample_interval=2
)


def _failed(report) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


def test_emt_copper_passes_and_writes_json_npz_and_plots(tmp_path):
    report = validate_nve(EMT(), copper(), **SHORT)
    assert report.passed, report.summary()
    assert report.steps == 300 and report.stopped is None
    assert abs(report.drift.drift_meV_atom_ps) < 0.05 and report.drift.fluctuation_meV_atom < 0.5
    paths = report.save(tmp_path)
    assert (
        sorted(p.name for p in tmp_path.iterdir())
        == sorted(p.name for p in paths)
        == ["validate.json", "validate.npz", "validate_energy.png", "validate_temperature.png"]
    )
    data = json.loads((tmp_path / "validate.json").read_text())
    assert data["verdict"] == "PASS" and data["thresholds"]["max_drift_meV_atom_ps"] == 0.05
    assert [c["name"] for c in data["checks"]] == [
        "finite",
        "drift",
        "fluctuation",
        "temperature",
        "min_distance",
    ]
    series = np.load(tmp_path / "validate.npz")
    assert series["time_fs"].shape == series["energy_potential"].shape == (151,)
    assert series["time_fs"][-1] == pytest.approx(600.0)
    assert series["min_distance_A"].min() == pytest.approx(report.min_distance_A)


def test_scaled_forces_fail_on_fluctuation():
    # Forces 1.3 × −∇E: the dynamics conserve K + 1.3 E, so the reported K + E swings with
    # 0.3 × the potential energy, ~0.3 · √1.5 k_B T / √N ≈ 1.7 meV/atom for 32 atoms at
    # 300 K: over three times the 0.5 meV/atom limit.
    report = validate_nve(ScaledForces(EMT(), 1.3), copper(), **SHORT)
    assert not report.passed
    assert "fluctuation" in _failed(report)
    assert report.drift.fluctuation_meV_atom > 1.0


def test_constant_force_fails_on_drift():
    # 0.05 eV/Å on every Cu atom accelerates the centre of mass: kinetic energy grows as
    # (F t)² / 2m ≈ 190 meV/atom/ps² · t², a slope of ~100 meV/atom/ps over 0.6 ps.
    report = validate_nve(ConstantForce(EMT(), [0.05, 0.0, 0.0]), copper(), **SHORT)
    assert not report.passed
    assert "drift" in _failed(report)
    assert report.drift.drift_meV_atom_ps > 20.0


def test_collapse_fails_on_distance_and_stops_early():
    # Every atom on a spring to the same point: the crystal implodes.
    atoms = copper()
    centre = np.tile(atoms.cell.sum(0) / 2, (len(atoms), 1))
    report = validate_nve(
        HarmonicCrystal(centre, k=0.5),
        atoms,
        duration_ps=1.0,
        timestep_fs=2.0,
        equilibration_ps=0.0,
        sample_interval=1,
    )
    assert not report.passed
    assert {"min_distance", "finite"} <= _failed(report)
    assert report.stopped and "apart at step" in report.stopped
    assert report.steps < 500
    assert report.min_distance_A < 0.6 * report.initial_min_distance_A


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="duration_ps must be a finite number > 0, got -1"):
        validate_nve(EMT(), copper(), duration_ps=-1)
    with pytest.raises(ValueError, match=r"is 5 steps; need at least 30"):
        validate_nve(EMT(), copper(), duration_ps=0.005, timestep_fs=1.0)
    with pytest.raises(
        ValueError, match="threshold max_drift_meV_atom_ps must be a positive number, got 0"
    ):
        ValidationThresholds(max_drift_meV_atom_ps=0)
    with pytest.raises(ValueError, match=r"cannot handle element\(s\) Si"):
        from mlff.distill import seed_structure

        validate_nve(EMT(), seed_structure("Si-diamond"), **SHORT)
