"""MD benchmarks: every calculator on the same structures, ensembles and sizes, interleaved.

``run_benchmark({"teacher": t, "student": s}, "Si-diamond", sizes=["small"], ensembles=["nve"])``
runs, for each (size, ensemble), one MD per calculator from the same positions and velocities,
advancing them in turn ``interleave_block`` steps at a time so that machine noise hits all of
them alike, and reports per-step latency, throughput, memory, energy drift, temperature and
pressure, and the speed ratio against the reference calculator. The JSON layout is
:data:`mlff.md.schema.BENCHMARK_SCHEMA`, documented in ``docs/md.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.md.calculators import check_compatible
from mlff.md.drift import energy_drift
from mlff.md.ensembles import (
    ENSEMBLES,
    MDSettings,
    check_structure_for,
    initialize_velocities,
    resolve_ensembles,
)
from mlff.md.environment import environment_info
from mlff.md.memory import MB, peak_rss_bytes
from mlff.md.runner import MDRun
from mlff.md.schema import SCHEMA_NAME, SCHEMA_VERSION, check_schema, finite_or_none
from mlff.md.stats import latency_stats, linear_fit, summary
from mlff.md.structures import resolve_sizes, sized_structure

__all__ = ["BenchmarkSettings", "BenchmarkResult", "run_benchmark", "run_metrics"]


def _whole(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


_MD_FIELDS = tuple(f.name for f in fields(MDSettings) if f.name != "ensemble")


@dataclass(frozen=True)
class BenchmarkSettings:
    """Settings of a benchmark, checked on construction.

    ``md`` holds the MD numbers shared by every ensemble (time step, temperature, pressure,
    thermostat constants, seed: see :class:`MDSettings`; its own ``ensemble`` is ignored).
    ``warmup`` steps are run and kept in the physics series but left out of the latency
    statistics. ``interleave_block`` = 0 runs the calculators one after another.
    ``time_limit_s`` caps each run's MD time (s).
    """

    structure: str = "Si-diamond"
    sizes: tuple = ("small", "medium", "large")
    ensembles: tuple = tuple(ENSEMBLES)
    steps: int = 100
    warmup: int = 3
    interleave_block: int = 10
    sample_interval: int = 1
    pressure_interval: int = 10
    time_limit_s: float | None = None
    md: MDSettings = MDSettings()

    def __post_init__(self):
        object.__setattr__(self, "sizes", tuple(resolve_sizes(self.sizes)))
        object.__setattr__(self, "ensembles", tuple(resolve_ensembles(self.ensembles)))
        _whole("steps", self.steps, 1)
        _whole("warmup", self.warmup, 0)
        if self.warmup >= self.steps:
            raise ValueError(f"warmup ({self.warmup}) must be smaller than steps ({self.steps})")
        _whole("interleave_block", self.interleave_block, 0)
        _whole("sample_interval", self.sample_interval, 1)
        _whole("pressure_interval", self.pressure_interval, 0)
        if self.time_limit_s is not None and not (
            math.isfinite(self.time_limit_s) and self.time_limit_s > 0
        ):
            raise ValueError(
                f"time_limit_s must be a positive number of seconds or None, got {self.time_limit_s!r}"
            )
        for ensemble in self.ensembles:
            self.for_ensemble(ensemble)  # e.g. a thermostat at 0 K is refused here

    @classmethod
    def from_options(cls, **options) -> BenchmarkSettings:
        """Settings from flat keywords: :class:`MDSettings` fields go to ``md``, the rest here."""
        md = {k: options.pop(k) for k in _MD_FIELDS if k in options}
        known = {f.name for f in fields(cls)} - {"md"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown benchmark setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known | set(_MD_FIELDS)))}"
            )
        return cls(md=MDSettings(**md), **options)

    def for_ensemble(self, ensemble: str) -> MDSettings:
        return self.md.replace(ensemble=ensemble)

    def to_dict(self) -> dict:
        """Flat: the benchmark's fields and the MD numbers side by side."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "md"}
        out["sizes"], out["ensembles"] = list(self.sizes), list(self.ensembles)
        out.update({k: getattr(self.md, k) for k in _MD_FIELDS})
        return out


def _growth_per_1000(steps: np.ndarray, values: np.ndarray, warmup: int) -> float | None:
    keep = (steps >= warmup) & np.isfinite(values)
    if keep.sum() < 2 or np.ptp(steps[keep]) == 0:
        return None
    return linear_fit(steps[keep], values[keep]).slope * 1000.0 / MB


def _memory(run: MDRun, warmup: int) -> dict:
    a = run.series.arrays()
    rss = a["rss_bytes"]
    out = {
        "rss_initial_MB": None if run.rss_initial is None else run.rss_initial / MB,
        "rss_peak_MB": finite_or_none(np.nanmax(rss) / MB) if np.isfinite(rss).any() else None,
        "rss_final_MB": finite_or_none(rss[-1] / MB) if rss.size else None,
        "rss_growth_MB_per_1000_steps": _growth_per_1000(a["step"], a["rss_attributed"], warmup),
        "cuda_allocated_initial_MB": None,
        "cuda_allocated_peak_MB": None,
        "cuda_allocated_final_MB": None,
        "cuda_growth_MB_per_1000_steps": None,
    }
    cuda = a["cuda_bytes"]
    if np.isfinite(cuda).any():
        out.update(
            cuda_allocated_initial_MB=finite_or_none(cuda[0] / MB),
            cuda_allocated_peak_MB=float(np.nanmax(cuda) / MB),
            cuda_allocated_final_MB=finite_or_none(cuda[-1] / MB),
            cuda_growth_MB_per_1000_steps=_growth_per_1000(a["step"], cuda, warmup),
        )
    return out


def _energy(run: MDRun, n_atoms: int) -> dict | None:
    a = run.series.arrays()
    if run.conserved is None or a["step"].size < 3 or not np.isfinite(a["energy_conserved"]).all():
        return None
    fit = energy_drift(a["time_fs"], a["energy_conserved"], n_atoms)
    return {"quantity": run.conserved[0], **fit.to_dict()}


def _series(run: MDRun, n_atoms: int) -> dict:
    a = run.series.arrays()
    conserved = a["energy_conserved"] / n_atoms
    return {
        "time_ps": (a["time_fs"] * 1e-3).tolist(),
        "energy_total_eV_per_atom": [
            finite_or_none(x) for x in (a["energy_potential"] + a["energy_kinetic"]) / n_atoms
        ],
        "energy_conserved_eV_per_atom": [finite_or_none(x) for x in conserved]
        if run.conserved
        else None,
        "temperature_K": [finite_or_none(x) for x in a["temperature_K"]],
        "volume_A3_per_atom": [finite_or_none(x) for x in a["volume_A3"] / n_atoms],
        "pressure_time_ps": (a["pressure_step"] * run.settings.timestep_fs * 1e-3).tolist(),
        "pressure_GPa": [finite_or_none(x) for x in a["pressure_GPa"]],
        "latency_s": a["latency_s"].tolist(),
    }


def run_metrics(run: MDRun, n_atoms: int, warmup: int, series: bool = True) -> dict:
    """The metrics of one finished run (see ``docs/md.md`` for every field)."""
    latency = np.asarray(run.series.latency_s)
    timed = latency[warmup:] if latency.size > warmup else latency
    stats = latency_stats(timed)
    volume = np.asarray(run.series.volume_A3) / n_atoms
    out = {
        "steps": run.done_steps,
        "steps_requested": run.steps,
        "warmup_steps": min(warmup, run.done_steps),
        "stopped": run.stopped,
        "first_call_s": run.first_call_s,
        "wall_s": run.wall_s,
        "md_time_s": run.md_time_s,
        "steps_per_s": float(timed.size / timed.sum()) if timed.size and timed.sum() > 0 else None,
        "latency_s": stats,
        "us_per_atom_step": stats["p50"] / n_atoms * 1e6 if stats else None,
        "memory": _memory(run, warmup),
        "energy": _energy(run, n_atoms),
        "temperature_K": summary(run.series.temperature_K),
        "pressure_GPa": summary(run.series.pressure_GPa),
        "volume_A3_per_atom": (
            {**summary(volume), "initial": float(volume[0]), "final": float(volume[-1])}
            if np.isfinite(volume).any()
            else None
        ),
    }
    if series:
        out["series"] = _series(run, n_atoms)
    return out


def _speed_ratio(runs: Mapping[str, dict], reference: str) -> dict | None:
    if len(runs) < 2:
        return None
    ref = runs[reference]["latency_s"]
    out = {"reference": reference, "p50": {}, "mean": {}}
    for name, metrics in runs.items():
        if name == reference:
            continue
        mine = metrics["latency_s"]
        for key in ("p50", "mean"):
            out[key][name] = ref[key] / mine[key] if ref and mine and mine[key] > 0 else None
    return out


@dataclass
class BenchmarkResult:
    """A benchmark: ``environment``, ``settings``, ``calculators`` and a list of ``cases``, each
    ``{size, n_atoms, formula, ensemble, kind, integrator, runs: {name: metrics}, speed_ratio}``."""

    environment: dict
    settings: dict
    calculators: dict
    cases: list = field(default_factory=list)
    created: str = ""
    process: dict = field(default_factory=dict)
    schema: str = SCHEMA_NAME
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> BenchmarkResult:
        check_schema(data)
        return cls(
            **{
                k: data[k]
                for k in (
                    "environment",
                    "settings",
                    "calculators",
                    "cases",
                    "created",
                    "process",
                    "schema",
                    "schema_version",
                )
            }
        )

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (a temporary file in the same directory, then a rename)."""
        from mlff.io import _atomic_write

        path = Path(path)
        data = self.to_dict()
        check_schema(data)
        text = json.dumps(data, indent=1, allow_nan=False)
        _atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        return path

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def case(self, size, ensemble: str) -> dict:
        for case in self.cases:
            if case["size"] == size and case["ensemble"] == ensemble:
                return case
        raise KeyError(
            f"no case ({size!r}, {ensemble!r}); have {[(c['size'], c['ensemble']) for c in self.cases]}"
        )

    def table(self) -> str:
        """A plain-text summary, one row per (case, calculator)."""
        head = (
            f"{'size':>6} {'N':>5} {'ensemble':<11} {'calculator':<14} {'p50 ms':>9} {'p99 ms':>9} "
            f"{'steps/s':>8} {'us/atom':>8} {'drift':>9} {'ratio':>7}  note"
        )
        rows = [head, "-" * len(head)]
        for case in self.cases:
            ratio = (case.get("speed_ratio") or {}).get("p50", {})
            for name, m in case["runs"].items():
                lat = m["latency_s"] or {}
                drift = (m["energy"] or {}).get("drift_meV_atom_ps")
                rows.append(
                    f"{str(case['size']):>6} {case['n_atoms']:>5} {case['ensemble']:<11} {name:<14} "
                    f"{_fmt(lat.get('p50'), 1e3, 9, 3)} {_fmt(lat.get('p99'), 1e3, 9, 3)} {_fmt(m['steps_per_s'], 1, 8, 1)} "
                    f"{_fmt(m['us_per_atom_step'], 1, 8, 1)} {_fmt(drift, 1, 9, 3)} {_fmt(ratio.get(name), 1, 7, 1)}"
                    f"  {m['stopped'] or ''}"
                )
        return "\n".join(rows)


def _fmt(value, scale: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value * scale:>{width}.{digits}f}"


def run_benchmark(
    calculators: Mapping[str, BaseCalculator],
    structure: str | Atoms = "Si-diamond",
    sizes: Sequence = ("small",),
    ensembles: Sequence[str] = ("nve",),
    steps: int = 100,
    warmup: int = 3,
    *,
    reference: str | None = None,
    calculator_info: Mapping[str, dict] | None = None,
    series: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    **md,
) -> BenchmarkResult:
    """Benchmark ``calculators`` (name → ASE calculator) side by side.

    Every setting and every (calculator, structure) pair is checked before any MD starts:
    bad values raise ``ValueError``. ``reference`` (default: ``"teacher"`` if present, else the
    first name) is the calculator the speed ratios are taken against. ``md`` takes the other
    settings as flat keywords: :class:`MDSettings` fields (``timestep_fs``, ``temperature_K``,
    …) and :class:`BenchmarkSettings` fields (``interleave_block``, ``time_limit_s``, …).
    """
    if not calculators:
        raise ValueError("give at least one calculator (name → ASE calculator)")
    for name, calc in calculators.items():
        if not isinstance(calc, BaseCalculator):
            raise ValueError(
                f"calculator {name!r} is a {type(calc).__name__}, not an ASE calculator"
            )
    if len({id(calc) for calc in calculators.values()}) < len(calculators):
        raise ValueError(
            f"calculators {', '.join(calculators)} include the same object twice; interleaved runs "
            "need one calculator object each (build a second one)"
        )
    reference = reference or ("teacher" if "teacher" in calculators else next(iter(calculators)))
    if reference not in calculators:
        raise ValueError(
            f"reference {reference!r} is not one of the calculators: {', '.join(calculators)}"
        )
    label = structure.get_chemical_formula() if isinstance(structure, Atoms) else str(structure)
    settings = BenchmarkSettings.from_options(
        structure=label,
        sizes=(sizes,) if isinstance(sizes, (str, int)) else tuple(sizes),
        ensembles=(ensembles,) if isinstance(ensembles, str) else tuple(ensembles),
        steps=steps,
        warmup=warmup,
        **md,
    )
    cells = {size: sized_structure(structure, size) for size in settings.sizes}
    needs_stress = any(settings.for_ensemble(e).kind == "NPT" for e in settings.ensembles)
    for size, atoms in cells.items():
        for ensemble in settings.ensembles:
            check_structure_for(settings.for_ensemble(ensemble), atoms)
        for name, calc in calculators.items():
            check_compatible(calc, atoms, name, stress=needs_stress)

    result = BenchmarkResult(
        environment=environment_info(),
        settings=settings.to_dict(),
        calculators={
            name: dict(
                (calculator_info or {}).get(name, {"class": type(calc).__name__}),
                reference=name == reference,
            )
            for name, calc in calculators.items()
        },
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    total = len(cells) * len(settings.ensembles) * len(calculators) * settings.steps
    from tqdm.auto import tqdm

    with tqdm(total=total, disable=not progress, unit="step", desc="bench") as bar:
        for size, atoms in cells.items():
            for ensemble in settings.ensembles:
                md_settings = settings.for_ensemble(ensemble)
                start = atoms.copy()
                initialize_velocities(start, md_settings.temperature_K, seed=md_settings.seed)
                runs = {
                    name: MDRun(
                        start,
                        calc,
                        md_settings,
                        settings.steps,
                        settings.sample_interval,
                        settings.pressure_interval,
                        settings.time_limit_s,
                    )
                    for name, calc in calculators.items()
                }
                block = settings.interleave_block or settings.steps
                while not all(run.finished for run in runs.values()):
                    for run in runs.values():
                        if not run.finished:
                            before = run.done_steps
                            run.advance(block)
                            bar.update(run.done_steps - before)
                bar.total -= sum(
                    run.steps - run.done_steps for run in runs.values()
                )  # stopped early
                bar.refresh()
                metrics = {
                    name: run_metrics(run, len(start), settings.warmup, series)
                    for name, run in runs.items()
                }
                case = {
                    "size": size,
                    "n_atoms": len(start),
                    "formula": start.get_chemical_formula(),
                    "ensemble": ensemble,
                    "kind": md_settings.kind,
                    "integrator": md_settings.integrator,
                    "runs": metrics,
                    "speed_ratio": _speed_ratio(metrics, reference),
                }
                result.cases.append(case)
                if log:
                    for name, m in metrics.items():
                        p50 = (m["latency_s"] or {}).get("p50")
                        log(
                            f"{size} ({len(start)} atoms) {ensemble}: {name} "
                            f"{'-' if p50 is None else f'{p50 * 1e3:.3f} ms/step'}"
                            + (f" [{m['stopped']}]" if m["stopped"] else "")
                        )
    peak = peak_rss_bytes()
    result.process = {"peak_rss_MB": None if peak is None else peak / MB}
    return result
