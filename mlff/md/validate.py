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
import vesin
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.md.drift import EnergyDrift, energy_drift
from mlff.md.ensembles import MDSettings, initialize_velocities
from mlff.md.loading import check_compatible
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
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}  {self.name:<13} {value:>11} {self.unit:<13} (limit {self.limit}) "
            f"{self.detail}"
        )


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
        from mlff.io import atomic_write

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False, default=_json_default)
        atomic_write(out / "validate.json", lambda tmp: Path(tmp).write_text(text))

        def write_npz(tmp):
            with open(tmp, "wb") as handle:
                np.savez(handle, **self.series)

        atomic_write(out / "validate.npz", write_npz)
        paths = [out / "validate.json", out / "validate.npz"]
        if plots:
            from mlff.md.plots import plot_validation

            paths += plot_validation(self.series, self.n_atoms, self.settings["temperature_K"], out)
        return paths


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def min_distance(atoms: Atoms, cutoff: float | None = None) -> float | None:
    """The shortest distance between two atoms (or an atom and an image of itself), in Å.

    With ``cutoff`` only pairs closer than it are looked at, and ``None`` means none is;
    without it the search widens from 3 Å up to 24 Å before giving up (``None``).
    """
    cutoffs = [cutoff] if cutoff is not None else [3.0, 6.0, 12.0, 24.0]
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    for c in cutoffs:
        nl = vesin.NeighborList(cutoff=float(c), full_list=False)
        distances = nl.compute(
            points=positions, box=atoms.cell.array, periodic=atoms.pbc.tolist(), quantities="d"
        )
        distances = np.asarray(distances[0] if isinstance(distances, (list, tuple)) else distances)
        if distances.size:
            return float(distances.min())
    return None


@dataclass(frozen=True)
class _Plan:
    """The checked settings of one validation and the step counts they give."""

    duration_ps: float
    timestep_fs: float
    temperature_K: float
    equilibration_ps: float
    sample_interval: int
    seed: int

    @property
    def steps(self) -> int:
        """NVE steps."""
        return int(round(self.duration_ps * 1000.0 / self.timestep_fs))

    @property
    def equilibration_steps(self) -> int:
        return int(round(self.equilibration_ps * 1000.0 / self.timestep_fs))


class _DistanceWatch:
    """The ``on_sample`` hook of the NVE run: records the shortest distance (Å) at each sample
    and stops the run once it falls below ``fraction`` × that of the starting structure.
    ``initial`` is ``None`` (and nothing is watched) when no two atoms are within 24 Å."""

    def __init__(self, start: Atoms, fraction: float):
        self.initial = min_distance(start)
        self.limit = None if self.initial is None else fraction * self.initial
        self.shortest: list[float] = []

    def __call__(self, snapshot: Atoms, step: int) -> str | None:
        if self.initial is None:
            return None
        d = min_distance(snapshot, self.initial)  # only pairs closer than at the start
        self.shortest.append(self.initial if d is None else d)
        closest = self.shortest[-1]
        if closest < self.limit:
            return f"atoms {closest:.3f} Å apart at step {step} (limit {self.limit:.3f} Å)"
        return None

    @property
    def lowest(self) -> float | None:
        return min(self.shortest) if self.shortest else None


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
    thresholds = thresholds or ValidationThresholds()
    plan = _check_settings(
        duration_ps, timestep_fs, temperature_K, equilibration_ps, sample_interval, seed, atoms
    )
    check_compatible(calc, atoms, "calculator")
    start = _starting_state(atoms, plan)
    watch = _DistanceWatch(start, thresholds.min_distance_fraction)
    run, stopped = _run(calc, start, plan, watch, progress)
    return _summarise(calc, atoms, plan, thresholds, run, stopped, watch)


def _number(name: str, value, minimum: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= minimum if strict else value < minimum):
        raise ValueError(
            f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}"
        )
    return float(value)


def _check_settings(
    duration_ps: float,
    timestep_fs: float,
    temperature_K: float,
    equilibration_ps: float,
    sample_interval: int,
    seed: int,
    atoms: Atoms,
) -> _Plan:
    """Raise ``ValueError`` on a bad setting, a run too short for 3 samples or fewer than 2
    atoms."""
    plan = _Plan(
        duration_ps=_number("duration_ps", duration_ps),
        timestep_fs=_number("timestep_fs", timestep_fs),
        temperature_K=_number("temperature_K", temperature_K),
        equilibration_ps=_number("equilibration_ps", equilibration_ps, strict=False),
        sample_interval=sample_interval,
        seed=seed,
    )
    if (
        isinstance(sample_interval, bool)
        or not isinstance(sample_interval, int)
        or sample_interval < 1
    ):
        raise ValueError(f"sample_interval must be an integer >= 1, got {sample_interval!r}")
    if plan.steps < 3 * sample_interval:
        raise ValueError(
            f"duration_ps={plan.duration_ps} at timestep_fs={plan.timestep_fs} is {plan.steps} "
            f"steps; need at least {3 * sample_interval} for 3 samples "
            f"(sample_interval={sample_interval})"
        )
    if len(atoms) < 2:
        raise ValueError(f"validation needs at least 2 atoms, got {len(atoms)}")
    return plan


def _starting_state(atoms: Atoms, plan: _Plan) -> Atoms:
    """A detached copy of ``atoms`` with Maxwell–Boltzmann velocities at the plan's T."""
    start = atoms.copy()
    start.calc = None
    initialize_velocities(start, plan.temperature_K, seed=plan.seed)
    return start


def _run(
    calc: BaseCalculator, start: Atoms, plan: _Plan, watch: _DistanceWatch, progress: bool
) -> tuple[MDRun, str | None]:
    """The equilibration (if any), then the NVE run; returns the NVE run (not started if the
    equilibration stopped) and why the whole stopped early, or ``None``."""
    from tqdm.auto import tqdm

    eq_steps, steps = plan.equilibration_steps, plan.steps
    with tqdm(total=eq_steps + steps, disable=not progress, unit="step", desc="validate") as bar:

        def advance(run: MDRun, n: int) -> None:
            while not run.finished:
                bar.update(run.advance(min(n, 1000)))

        stopped = None
        if eq_steps:
            start, stopped = _equilibrate(start, calc, plan, advance)
        run = MDRun(
            start,
            calc,
            MDSettings("nve", timestep_fs=plan.timestep_fs),
            steps,
            plan.sample_interval,
            pressure_interval=0,
            on_sample=watch,
        )
        if stopped is None:
            advance(run, steps)
            stopped = run.stopped
    return run, stopped


def _equilibrate(
    atoms: Atoms, calc: BaseCalculator, plan: _Plan, advance: Callable[[MDRun, int], None]
) -> tuple[Atoms, str | None]:
    """Bussi MD for the plan's equilibration steps (τ = max(10 Δt, 20 fs): canonical for any
    τ, and a short one decorrelates the energy quickly), then the kinetic energy set so that
    E_total equals ⟨E_total⟩ over the second half."""
    steps = plan.equilibration_steps
    settings = MDSettings(
        "bussi",
        timestep_fs=plan.timestep_fs,
        temperature_K=plan.temperature_K,
        taut_fs=max(10 * plan.timestep_fs, 20.0),
        seed=plan.seed,
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


def _total_energy(series: dict) -> np.ndarray:
    return series["energy_potential"] + series["energy_kinetic"]  # (n_samples,) eV


def _drift(series: dict, n_atoms: int) -> EnergyDrift | None:
    """The drift of the total energy; ``None`` with fewer than 3 samples or any non-finite."""
    total = _total_energy(series)
    if total.size < 3 or not np.isfinite(total).all():
        return None
    return energy_drift(series["time_fs"], total, n_atoms)


def _drift_note(drift: EnergyDrift | None, limit: float) -> str:
    if drift is None:
        return ""
    note = f"± {drift.drift_stderr_meV_atom_ps:.2g} (OLS)"
    if drift.drift_stderr_meV_atom_ps > 0.5 * limit:
        note += "; run too short: the uncertainty is comparable to the limit"
    return note


def _checks(
    series: dict,
    stopped: str | None,
    drift: EnergyDrift | None,
    temperature: dict | None,
    watch: _DistanceWatch,
    plan: _Plan,
    thresholds: ValidationThresholds,
) -> list[Check]:
    """The five PASS/FAIL checks of the module docstring, in its order."""
    t, target_K = thresholds, plan.temperature_K
    total = _total_energy(series)
    finite = bool(np.isfinite(total).all() and total.size) and stopped is None
    initial, lowest, limit = watch.initial, watch.lowest, watch.limit
    return [
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
            and abs(temperature["mean"] - target_K) <= t.temperature_tolerance * target_K,
            None if temperature is None else temperature["mean"],
            f"{target_K:g} ± {t.temperature_tolerance * target_K:.3g}",
            "K (mean)",
            "" if temperature is None else f"std {temperature['std']:.1f} K",
        ),
        Check(
            "min_distance",
            initial is None or (lowest is not None and lowest >= limit),
            lowest,
            "n/a" if initial is None else f">= {limit:.3f}",
            "Å",
            "no neighbours within 24 Å" if initial is None else f"start {initial:.3f} Å",
        ),
    ]


def _summarise(
    calc: BaseCalculator,
    atoms: Atoms,
    plan: _Plan,
    thresholds: ValidationThresholds,
    run: MDRun,
    stopped: str | None,
    watch: _DistanceWatch,
) -> ValidationReport:
    """The NVE series, its drift and temperature, the checks and the verdict."""
    from mlff.md.environment import environment_info

    series = run.series.arrays()
    series["min_distance_A"] = np.asarray(watch.shortest, dtype=np.float64)
    drift = _drift(series, len(atoms))
    temperature = summary(series["temperature_K"])
    checks = _checks(series, stopped, drift, temperature, watch, plan, thresholds)
    return ValidationReport(
        passed=all(c.passed for c in checks),
        checks=checks,
        n_atoms=len(atoms),
        formula=atoms.get_chemical_formula(),
        settings={**asdict(plan), "calculator": type(calc).__name__},
        thresholds=asdict(thresholds),
        steps=run.done_steps,
        stopped=stopped,
        drift=drift,
        temperature_K=temperature,
        initial_min_distance_A=watch.initial,
        min_distance_A=watch.lowest,
        timing={
            "md_time_s": run.md_time_s,
            "wall_s": run.wall_s,
            "steps_per_s": run.done_steps / run.md_time_s if run.md_time_s > 0 else None,
        },
        series=series,
        environment=environment_info(),
    )
