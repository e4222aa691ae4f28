"""Energy drift and fluctuation of an MD series.

drift = least-squares slope of the energy per atom against time, in meV/atom/ps;
fluctuation = standard deviation of the detrended energy per atom, in meV/atom.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mlff.md.stats import linear_fit

__all__ = ["EnergyDrift", "energy_drift"]


@dataclass(frozen=True)
class EnergyDrift:
    """Drift and fluctuation of an energy series (per atom).

    Attributes:
        drift_meV_atom_ps: slope of E/N against time.
        drift_stderr_meV_atom_ps: its OLS standard error (a lower bound for correlated noise).
        fluctuation_meV_atom: std of E/N around the fitted line.
        span_meV_atom: max − min of E/N.
        duration_ps: time covered by the series.
        n_samples: number of points used.
    """

    drift_meV_atom_ps: float
    drift_stderr_meV_atom_ps: float
    fluctuation_meV_atom: float
    span_meV_atom: float
    duration_ps: float
    n_samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def energy_drift(time_fs, energy_eV, n_atoms: int) -> EnergyDrift:
    """Fit the total energy ``energy_eV`` (eV, whole system) sampled at ``time_fs`` (fs)."""
    if int(n_atoms) < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    t_ps = np.asarray(time_fs, dtype=np.float64) * 1e-3
    e_meV = np.asarray(energy_eV, dtype=np.float64) * 1e3 / int(n_atoms)
    fit = linear_fit(t_ps, e_meV)
    finite = e_meV[np.isfinite(e_meV)]
    return EnergyDrift(
        drift_meV_atom_ps=fit.slope,
        drift_stderr_meV_atom_ps=fit.slope_stderr,
        fluctuation_meV_atom=fit.residual_std,
        span_meV_atom=float(np.ptp(finite)),
        duration_ps=float(np.ptp(t_ps[np.isfinite(t_ps)])),
        n_samples=fit.n,
    )
