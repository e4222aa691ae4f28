"""Ensemble names → real ASE integrators; equipartition on a harmonic crystal; NPT near
equilibrium with EMT copper."""

import numpy as np
import pytest
from ase import units
from ase.build import molecule
from ase.calculators.emt import EMT
from md_helpers import copper, harmonic_copper

from mlff.md.ensembles import (
    ENSEMBLES,
    MDSettings,
    initialize_velocities,
    make_integrator,
    resolve_ensemble,
)
from mlff.md.runner import MDRun


@pytest.mark.parametrize("name", list(ENSEMBLES))
def test_each_name_builds_its_ase_integrator(name):
    atoms, calc = harmonic_copper()
    atoms.calc = calc
    initialize_velocities(atoms, 300.0)  # Bussi refuses to start at rest
    settings = MDSettings(name, pressure_GPa=1.5)
    dyn = make_integrator(atoms, settings)
    if settings.kind == "NPT":
        assert dyn._pressure_au == pytest.approx(1.5 * units.GPa)  # GPa → eV/Å³
    assert type(dyn).__name__ == ENSEMBLES[name].integrator == settings.integrator
    assert type(dyn).__module__.startswith("ase.md.")
    assert dyn.dt == pytest.approx(1.0 * units.fs)
    assert resolve_ensemble(settings.integrator) == name  # class names are aliases


def test_bad_settings_name_the_value_and_what_is_accepted():
    with pytest.raises(
        ValueError,
        match=r"unknown ensemble 'nvx'; accepted: nve \(VelocityVerlet\).*npt \(MTKNPT\)",
    ):
        MDSettings("nvx")
    with pytest.raises(ValueError, match="timestep_fs must be a positive finite number, got -1"):
        MDSettings("nve", timestep_fs=-1)
    with pytest.raises(ValueError, match="'langevin' needs temperature_K > 0"):
        MDSettings("langevin", temperature_K=0)
    with pytest.raises(ValueError, match="temperature_K must be a finite number >= 0 K, got nan"):
        MDSettings("nve", temperature_K=float("nan"))
    water = molecule("H2O")
    with pytest.raises(ValueError, match=r"'npt-iso' \(IsotropicMTKNPT\) needs a 3D-periodic cell"):
        make_integrator(water, MDSettings("npt-iso"))


def test_initial_velocities_are_seeded_at_rest_and_at_temperature():
    a, _ = harmonic_copper(n_atoms=256)
    b = a.copy()
    initialize_velocities(a, 600.0, seed=3)
    initialize_velocities(b, 600.0, seed=3)
    assert np.array_equal(a.get_momenta(), b.get_momenta())
    assert np.abs(a.get_momenta().sum(0)).max() < 1e-10
    # 768 degrees of freedom: the sampled temperature is within a few sqrt(2/768) = 5 % of 600 K.
    assert a.get_temperature() == pytest.approx(600.0, rel=0.2)


@pytest.mark.parametrize("name", ["langevin", "bussi", "nose-hoover"])
def test_thermostats_give_equipartition_on_a_harmonic_crystal(name):
    # 96 degrees of freedom, 3 ps after 1 ps of settling, oscillator period 114 fs: the mean
    # kinetic and potential energies carry ~3 % statistical error, so 12 % is a 4σ bound.
    atoms, calc = harmonic_copper()
    settings = MDSettings(name, timestep_fs=2.0, temperature_K=300.0, seed=0)
    initialize_velocities(atoms, 300.0, seed=0)
    run = MDRun(atoms, calc, settings, 2000, pressure_interval=0)
    run.advance(2000)
    a = run.series.arrays()
    keep = a["step"] >= 500
    assert a["temperature_K"][keep].mean() == pytest.approx(300.0, rel=0.12)
    kT = units.kB * 300.0
    assert a["energy_potential"][keep].mean() == pytest.approx(1.5 * len(atoms) * kT, rel=0.12)


@pytest.mark.parametrize("name", ["npt-iso", "npt"])
def test_npt_brings_an_expanded_copper_cell_back_near_equilibrium(name):
    # EMT copper's 0 K volume V0 from a parabola through E(a). Start 10 % too large in volume.
    # At 300 K the equilibrium volume is V0 plus ~1.5 % of thermal expansion (α_V ≈ 5e-5 /K),
    # and a 32-atom cell fluctuates by a few %. Over the second half of 1 ps the mean volume
    # must have come at least halfway back (< 1.05 V0) without collapsing below the 0 K volume
    # (> 0.98 V0), and every volume must be finite.
    scan = np.linspace(3.52, 3.66, 5)
    energies = []
    for a in scan:
        cell = copper(32, a)
        cell.calc = EMT()
        energies.append(cell.get_potential_energy())
    c2, c1, _ = np.polyfit(scan, energies, 2)
    v0 = (-c1 / (2 * c2)) ** 3 / 4  # Å³/atom, fcc
    atoms = copper(32, (-c1 / (2 * c2)) * 1.10 ** (1 / 3))
    settings = MDSettings(name, timestep_fs=2.0, temperature_K=300.0, taut_fs=50.0, pdamp_fs=100.0)
    initialize_velocities(atoms, 300.0, seed=0)
    run = MDRun(atoms, EMT(), settings, 500, pressure_interval=0)
    run.advance(500)
    assert run.stopped is None
    volume = run.series.arrays()["volume_A3"] / len(atoms)
    assert np.isfinite(volume).all() and volume.min() > 0.5 * v0
    assert volume[0] == pytest.approx(1.10 * v0, rel=1e-3)
    assert 0.98 * v0 < volume[len(volume) // 2 :].mean() < 1.05 * v0
