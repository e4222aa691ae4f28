"""Long-NVE validation: does a calculator conserve energy, hold its temperature and keep atoms
apart? PASS only if every check passes.

The run: Maxwell–Boltzmann velocities at T, an equilibration with the Bussi thermostat, the
kinetic energy rescaled so the total energy equals the mean total energy of the second half of
the equilibration (so the NVE temperature sits near T rather than wherever the last
thermostat kick left it), then the NVE run with velocity Verlet. Defaults: 100 ps, 0.5 fs,
300 K, 2 ps of equilibration.

Checks (thresholds in :class:`ValidationThresholds`):

- ``finite``: no NaN/inf in energy or positions, and the run finished every step;
- ``drift``: |slope of E_total/N vs t| ≤ ``max_drift_meV_atom_ps``;
- ``fluctuation``: std of detrended E_total/N ≤ ``max_fluctuation_meV_atom``;
- ``temperature``: |⟨T⟩ − T| ≤ ``temperature_tolerance`` · T;
- ``min_distance``: the shortest distance seen ≥ ``min_distance_fraction`` × that at the start.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.md.calculators import check_compatible
from mlff.md.distances import min_distance
from mlff.md.drift import EnergyDrift, energy_drift
from mlff.md.ensembles import MDSettings, initialize_velocities
from mlff.md.runner import MDRun
from mlff.md.stats import summary

__all__ = ["ValidationThresholds", "Check", "ValidationReport", "validate_nve"]

VALIDATION_SCHEMA_NAME = "mlff.md.validate"


@dataclass(frozen=True)
class ValidationThresholds:
    """PASS/FAIL limits.

    Attributes:
        max_drift_meV_atom_ps: 0.05 meV/atom/ps is 5 meV/atom over 100 ps, about 20 K of
            heating of a solid (3 k_B per atom) — small against k_B·300 K = 25.9 meV.
        max_fluctuation_meV_atom: 0.5 meV/atom, 2 % of k_B·300 K; velocity Verlet at 0.5 fs
            on a smooth potential stays one to two orders of magnitude below it.
        temperature_tolerance: relative; 0.15 allows the microcanonical spread of a few dozen
            atoms (≈ 1/√(3N) in energy) after equilibration.
        min_distance_fraction: 0.6 × the shortest distance of the starting structure; thermal
            vibrations at a few hundred K compress bonds by ~10 %, a collapsing model by far more.
    """

    max_drift_meV_atom_ps: float = 0.05
    max_fluctuation_meV_atom: float = 0.5
    temperature_tolerance: float = 0.15
    min_distance_fraction: float = 0.6

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"threshold {name} must be a positive number, got {value!r}")
        if self.min_distance_fraction >= 1:
            raise ValueError(
                f"min_distance_fraction must be below 1, got {self.min_distance_fraction}"
            )


@dataclass(frozen=True)
class Check:
    """One PASS/FAIL check: the measured ``value`` against ``limit``, both in ``unit``."""

    name: str
    passed: bool
    value: float | None
    limit: str
    unit: str
    detail: str = ""

    def line(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<13} {value:>11} {self.unit:<13} (limit {self.limit}) {self.detail}"


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_nve`. ``series`` holds the NVE samples (numpy arrays)."""

    passed: bool
    checks: list[Check]
    n_atoms: int
    formula: str
    settings: dict
    thresholds: dict
    steps: int
    stopped: str | None
    drift: EnergyDrift | None
    temperature_K: dict | None
    initial_min_distance_A: float | None
    min_distance_A: float | None
    timing: dict
    series: dict = field(default_factory=dict, repr=False)
    environment: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "series"}
        out["drift"] = self.drift.to_dict() if self.drift else None
        return {
            "schema": VALIDATION_SCHEMA_NAME,
            "schema_version": 1,
            "verdict": "PASS" if self.passed else "FAIL",
            **out,
        }

    def summary(self) -> str:
        head = (
            f"NVE validation of {self.formula} ({self.n_atoms} atoms): {self.steps} steps of "
            f"{self.settings['timestep_fs']} fs at {self.settings['temperature_K']} K"
            + (f"; stopped: {self.stopped}" if self.stopped else "")
        )
        return "\n".join(
            [head]
            + [c.line() for c in self.checks]
            + [f"verdict: {'PASS' if self.passed else 'FAIL'}"]
        )

    def save(self, out: str | Path, plots: bool = True) -> list[Path]:
        """Write ``validate.json``, ``validate.npz`` (the series) and, with ``plots``, the energy
        and temperature PNGs into ``out``; each file atomically."""
        from mlff.io import _atomic_write

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False, default=_json_default)
        _atomic_write(out / "validate.json", lambda tmp: Path(tmp).write_text(text))

        def write_npz(tmp):
            with open(tmp, "wb") as handle:
                np.savez(handle, **self.series)

        _atomic_write(out / "validate.npz", write_npz)
        paths = [out / "validate.json", out / "validate.npz"]
        if plots:
            from mlff.md.plots import plot_validation

            paths += plot_validation(self.series, self.n_atoms, self.settings["temperature_K"], out)
        return paths


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _number(name: str, value, minimum: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= minimum if strict else value < minimum):
        raise ValueError(
            f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}"
        )
    return float(value)


def _drift_note(drift: EnergyDrift | None, limit: float) -> str:
    if drift is None:
        return ""
    note = f"± {drift.drift_stderr_meV_atom_ps:.2g} (OLS)"
    if drift.drift_stderr_meV_atom_ps > 0.5 * limit:
        note += "; run too short: the uncertainty is comparable to the limit"
    return note


def _equilibrate(
    atoms: Atoms,
    calc,
    timestep_fs: float,
    temperature_K: float,
    steps: int,
    seed: int,
    advance: Callable[[MDRun, int], None],
) -> tuple[Atoms, str | None]:
    """Bussi MD for ``steps`` (τ = max(10 Δt, 20 fs): canonical for any τ, and a short one
    decorrelates the energy quickly), then the kinetic energy set so that E_total equals
    ⟨E_total⟩ over the second half."""
    settings = MDSettings(
        "bussi",
        timestep_fs=timestep_fs,
        temperature_K=temperature_K,
        taut_fs=max(10 * timestep_fs, 20.0),
        seed=seed,
    )
    run = MDRun(atoms, calc, settings, steps, sample_interval=1, pressure_interval=0)
    advance(run, steps)
    if run.stopped:
        return run.atoms, f"equilibration: {run.stopped}"
    a = run.series.arrays()
    half = a["step"] >= steps / 2
    target = float(np.mean(a["energy_potential"][half] + a["energy_kinetic"][half]))
    out = run.atoms.copy()
    out.set_momenta(run.atoms.get_momenta())
    kinetic = target - run.atoms.get_potential_energy()
    current = out.get_kinetic_energy()
    if kinetic > 0 and current > 0:
        out.set_momenta(out.get_momenta() * math.sqrt(kinetic / current))
    return out, None


def validate_nve(
    calc: BaseCalculator,
    atoms: Atoms,
    duration_ps: float = 100.0,
    timestep_fs: float = 0.5,
    temperature_K: float = 300.0,
    equilibration_ps: float = 2.0,
    sample_interval: int = 10,
    thresholds: ValidationThresholds | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ValidationReport:
    """Run the NVE validation of ``calc`` on ``atoms`` (not modified) and return the report.

    ``sample_interval`` steps between samples of energy, temperature and shortest distance.
    Bad settings, or a structure the calculator cannot handle, raise ``ValueError`` first.
    """
    from tqdm.auto import tqdm

    thresholds = thresholds or ValidationThresholds()
    duration_ps = _number("duration_ps", duration_ps)
    timestep_fs = _number("timestep_fs", timestep_fs)
    temperature_K = _number("temperature_K", temperature_K)
    equilibration_ps = _number("equilibration_ps", equilibration_ps, strict=False)
    if (
        isinstance(sample_interval, bool)
        or not isinstance(sample_interval, int)
        or sample_interval < 1
    ):
        raise ValueError(f"sample_interval must be an integer >= 1, got {sample_interval!r}")
    steps = int(round(duration_ps * 1000.0 / timestep_fs))
    if steps < 3 * sample_interval:
        raise ValueError(
            f"duration_ps={duration_ps} at timestep_fs={timestep_fs} is {steps} steps; "
            f"need at least {3 * sample_interval} for 3 samples (sample_interval={sample_interval})"
        )
    if len(atoms) < 2:
        raise ValueError(f"validation needs at least 2 atoms, got {len(atoms)}")
    check_compatible(calc, atoms, "calculator")
    eq_steps = int(round(equilibration_ps * 1000.0 / timestep_fs))
    start = atoms.copy()
    start.calc = None
    initialize_velocities(start, temperature_K, seed=seed)
    d0 = min_distance(start)
    limit = None if d0 is None else thresholds.min_distance_fraction * d0
    shortest: list[float] = []

    def watch(snapshot: Atoms, step: int) -> str | None:
        if d0 is None:
            return None
        d = min_distance(snapshot, d0)
        shortest.append(d0 if d is None else d)
        if shortest[-1] < limit:
            return f"atoms {shortest[-1]:.3f} Å apart at step {step} (limit {limit:.3f} Å)"
        return None

    with tqdm(total=eq_steps + steps, disable=not progress, unit="step", desc="validate") as bar:

        def advance(run: MDRun, n: int) -> None:
            while not run.finished:
                bar.update(run.advance(min(n, 1000)))

        stopped = None
        if eq_steps:
            start, stopped = _equilibrate(
                start, calc, timestep_fs, temperature_K, eq_steps, seed, advance
            )
        run = MDRun(
            start,
            calc,
            MDSettings("nve", timestep_fs=timestep_fs),
            steps,
            sample_interval,
            pressure_interval=0,
            on_sample=watch,
        )
        if stopped is None:
            advance(run, steps)
            stopped = run.stopped
    series = run.series.arrays()
    series["min_distance_A"] = np.asarray(shortest, dtype=np.float64)
    n = len(start)
    total = series["energy_potential"] + series["energy_kinetic"]
    finite = bool(np.isfinite(total).all() and total.size) and stopped is None
    drift = (
        energy_drift(series["time_fs"], total, n)
        if total.size >= 3 and np.isfinite(total).all()
        else None
    )
    temperature = summary(series["temperature_K"])
    lowest = float(series["min_distance_A"].min()) if series["min_distance_A"].size else None
    t = thresholds
    checks = [
        Check(
            "finite",
            finite,
            float(np.size(total) - np.isfinite(total).sum()),
            "0 and all steps run",
            "bad samples",
            stopped or "",
        ),
        Check(
            "drift",
            drift is not None and abs(drift.drift_meV_atom_ps) <= t.max_drift_meV_atom_ps,
            None if drift is None else drift.drift_meV_atom_ps,
            f"|x| <= {t.max_drift_meV_atom_ps:g}",
            "meV/atom/ps",
            _drift_note(drift, t.max_drift_meV_atom_ps),
        ),
        Check(
            "fluctuation",
            drift is not None and drift.fluctuation_meV_atom <= t.max_fluctuation_meV_atom,
            None if drift is None else drift.fluctuation_meV_atom,
            f"<= {t.max_fluctuation_meV_atom:g}",
            "meV/atom",
        ),
        Check(
            "temperature",
            temperature is not None
            and abs(temperature["mean"] - temperature_K) <= t.temperature_tolerance * temperature_K,
            None if temperature is None else temperature["mean"],
            f"{temperature_K:g} ± {t.temperature_tolerance * temperature_K:.3g}",
            "K (mean)",
            "" if temperature is None else f"std {temperature['std']:.1f} K",
        ),
        Check(
            "min_distance",
            d0 is None or (lowest is not None and lowest >= limit),
            lowest,
            "n/a" if d0 is None else f">= {limit:.3f}",
            "Å",
            "no neighbours within 24 Å" if d0 is None else f"start {d0:.3f} Å",
        ),
    ]
    from mlff.md.environment import environment_info

    return ValidationReport(
        passed=all(c.passed for c in checks),
        checks=checks,
        n_atoms=n,
        formula=start.get_chemical_formula(),
        settings={
            "duration_ps": duration_ps,
            "timestep_fs": timestep_fs,
            "temperature_K": temperature_K,
            "equilibration_ps": equilibration_ps,
            "sample_interval": sample_interval,
            "seed": seed,
            "calculator": type(calc).__name__,
        },
        thresholds=asdict(thresholds),
        steps=run.done_steps,
        stopped=stopped,
        drift=drift,
        temperature_K=temperature,
        initial_min_distance_A=d0,
        min_distance_A=lowest,
        timing={
            "md_time_s": run.md_time_s,
            "wall_s": run.wall_s,
            "steps_per_s": run.done_steps / run.md_time_s if run.md_time_s > 0 else None,
        },
        series=series,
        environment=environment_info(),
    )
