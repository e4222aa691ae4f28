"""Energy drift and fluctuation of an MD series.

drift = least-squares slope of the energy per atom against time, in meV/atom/ps;
fluctuation = standard deviation of the detrended energy per atom, in meV/atom.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import linregress

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
    """Fit the total energy ``energy_eV`` (eV, whole system) sampled at ``time_fs`` (fs).

    Samples where time or energy is not finite are left out; the rest need at least two
    distinct times.
    """
    if int(n_atoms) < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    t_ps = np.asarray(time_fs, dtype=np.float64).ravel() * 1e-3
    e_meV = np.asarray(energy_eV, dtype=np.float64).ravel() * 1e3 / int(n_atoms)
    if t_ps.shape != e_meV.shape:
        raise ValueError(
            f"time and energy must have the same length, got {t_ps.size} and {e_meV.size}"
        )
    keep = np.isfinite(t_ps) & np.isfinite(e_meV)
    t, e = t_ps[keep], e_meV[keep]
    if t.size < 2 or np.ptp(t) == 0:
        raise ValueError(f"a line needs at least two distinct x values, got {t.size} point(s)")
    fit = linregress(t, e)
    # linregress gives NaN for a constant series (its correlation is undefined); the line is
    # exact then, so its slope has no uncertainty.
    stderr = float(fit.stderr) if np.ptp(e) > 0 else 0.0
    residuals = e - (fit.slope * t + fit.intercept)
    return EnergyDrift(
        drift_meV_atom_ps=float(fit.slope),
        drift_stderr_meV_atom_ps=stderr,
        fluctuation_meV_atom=float(residuals.std()),
        span_meV_atom=float(np.ptp(e_meV[np.isfinite(e_meV)])),
        duration_ps=float(np.ptp(t_ps[np.isfinite(t_ps)])),
        n_samples=int(t.size),
    )
