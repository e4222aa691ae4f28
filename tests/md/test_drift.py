"""The drift estimator on synthetic series whose slope and noise are known."""

import numpy as np
import pytest

from mlff.md.drift import energy_drift
from mlff.md.stats import latency_stats


def test_known_slope_and_noise_are_recovered_in_the_right_units():
    rng = np.random.default_rng(0)
    n_atoms, slope, sigma = 64, 0.8, 0.05  # meV/atom/ps, meV/atom
    t_fs = np.arange(20000) * 0.5  # 10 ps
    per_atom_meV = (
        -3500e3 + slope * t_fs * 1e-3 + rng.normal(0.0, sigma, t_fs.size)
    )  # a realistic offset
    total_eV = per_atom_meV * 1e-3 * n_atoms
    fit = energy_drift(t_fs, total_eV, n_atoms)
    # OLS standard error of the slope for white noise: σ / sqrt(Σ(t − t̄)²).
    expected_se = sigma / np.sqrt(np.sum((t_fs * 1e-3 - t_fs.mean() * 1e-3) ** 2))
    assert abs(fit.drift_meV_atom_ps - slope) < 5 * expected_se
    assert fit.drift_stderr_meV_atom_ps == pytest.approx(expected_se, rel=0.05)
    assert fit.fluctuation_meV_atom == pytest.approx(sigma, rel=0.03)
    assert fit.duration_ps == pytest.approx(t_fs[-1] * 1e-3)
    assert fit.n_samples == t_fs.size


def test_oscillation_without_drift_has_zero_slope_and_its_rms_as_fluctuation():
    t_fs = np.linspace(0.0, 5000.0, 10001)  # 5 ps, 50 whole periods of 100 fs
    amplitude = 0.2  # meV/atom
    e = amplitude * np.sin(2 * np.pi * t_fs / 100.0) * 1e-3 * 10  # 10 atoms, eV
    fit = energy_drift(t_fs, e, 10)
    # Least squares over whole periods: slope = cov(t, A sin ωt) / var(t) = −12 A / (ω T²).
    omega, duration = 2 * np.pi / 0.1, 5.0  # 1/ps, ps
    assert fit.drift_meV_atom_ps == pytest.approx(-12 * amplitude / (omega * duration**2), rel=1e-2)
    assert fit.fluctuation_meV_atom == pytest.approx(amplitude / np.sqrt(2), rel=1e-3)
    assert fit.span_meV_atom == pytest.approx(2 * amplitude, rel=1e-3)


def test_exact_line_has_no_fluctuation():
    t = np.arange(100.0)
    fit = energy_drift(t, 2e-3 * t * 1e-3 * 4, 4)  # 2 meV/atom/ps on 4 atoms
    assert fit.drift_meV_atom_ps == pytest.approx(2.0)
    assert fit.fluctuation_meV_atom < 1e-9


def test_constant_energy_has_no_drift_and_no_uncertainty():
    # linregress leaves its standard error undefined (NaN) here; the reports need a number.
    fit = energy_drift(np.arange(50.0), np.full(50, -3.5), 2)
    assert fit.drift_meV_atom_ps == 0.0 and fit.drift_stderr_meV_atom_ps == 0.0
    assert fit.fluctuation_meV_atom == 0.0 and fit.span_meV_atom == 0.0


def test_non_finite_samples_are_left_out():
    t = np.arange(10.0)
    energy = 1e-3 * t * 1e-3  # 1 meV/atom/ps on one atom
    energy[3] = np.nan
    fit = energy_drift(t, energy, 1)
    assert fit.n_samples == 9 and fit.drift_meV_atom_ps == pytest.approx(1.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="n_atoms must be >= 1, got 0"):
        energy_drift([0, 1], [0, 1], 0)
    with pytest.raises(ValueError, match="at least two distinct x"):
        energy_drift([1.0], [2.0], 1)
    with pytest.raises(ValueError, match="at least two distinct x"):
        energy_drift([1.0, 1.0, np.nan], [2.0, 3.0, 4.0], 1)  # one distinct finite time
    with pytest.raises(ValueError, match="same length"):
        energy_drift([1.0, 2.0], [2.0], 1)


def test_latency_percentiles_of_a_known_sample():
    stats = latency_stats(np.arange(1, 101) * 1e-3)  # 1 … 100 ms
    assert stats["min"] == pytest.approx(1e-3) and stats["max"] == pytest.approx(0.1)
    assert stats["p50"] == pytest.approx(50.5e-3)
    assert stats["p95"] == pytest.approx(95.05e-3)
    assert stats["p99"] == pytest.approx(99.01e-3)
    assert stats["mean"] == pytest.approx(50.5e-3)
