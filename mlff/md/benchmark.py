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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.md.ensembles import (
    ENSEMBLES,
    MDSettings,
    check_structure_for,
    initialize_velocities,
    resolve_ensemble,
)
from mlff.md.environment import environment_info
from mlff.md.loading import check_compatible
from mlff.md.memory import MB, peak_rss_bytes
from mlff.md.metrics import run_metrics
from mlff.md.runner import MDRun
from mlff.md.schema import SCHEMA_NAME, SCHEMA_VERSION, check_schema
from mlff.md.structures import SIZES, resolve_size, sized_structure

__all__ = ["BenchmarkSettings", "BenchmarkResult", "run_benchmark", "run_metrics"]


def _resolve_list(items: Iterable, resolve: Callable, what: str, accepted: str) -> tuple:
    """``resolve(x)`` of each item, in order, without repeats; a lone string or integer is one
    item, and an empty list raises ``ValueError`` naming ``what`` and ``accepted``."""
    out: list = []
    for item in [items] if isinstance(items, (str, int)) else items:
        key = resolve(item)
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"give at least one {what}; accepted: {accepted}")
    return tuple(out)


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
        sizes = _resolve_list(
            self.sizes, resolve_size, "size", f"{', '.join(SIZES)} or a number of atoms"
        )
        ensembles = _resolve_list(
            self.ensembles, resolve_ensemble, "ensemble", ", ".join(ENSEMBLES)
        )
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "ensembles", ensembles)
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
                "time_limit_s must be a positive number of seconds or None, "
                f"got {self.time_limit_s!r}"
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
        from mlff.io import atomic_write

        path = Path(path)
        data = self.to_dict()
        check_schema(data)
        text = json.dumps(data, indent=1, allow_nan=False)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        return path

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def case(self, size, ensemble: str) -> dict:
        for case in self.cases:
            if case["size"] == size and case["ensemble"] == ensemble:
                return case
        have = [(c["size"], c["ensemble"]) for c in self.cases]
        raise KeyError(f"no case ({size!r}, {ensemble!r}); have {have}")

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
                    f"{str(case['size']):>6} {case['n_atoms']:>5} {case['ensemble']:<11} "
                    f"{name:<14} {_fmt(lat.get('p50'), 1e3, 9, 3)} "
                    f"{_fmt(lat.get('p99'), 1e3, 9, 3)} {_fmt(m['steps_per_s'], 1, 8, 1)} "
                    f"{_fmt(m['us_per_atom_step'], 1, 8, 1)} {_fmt(drift, 1, 9, 3)} "
                    f"{_fmt(ratio.get(name), 1, 7, 1)}  {m['stopped'] or ''}"
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
    from tqdm.auto import tqdm

    reference = _check_calculators(calculators, reference)
    settings = BenchmarkSettings.from_options(
        structure=_label(structure),
        sizes=(sizes,) if isinstance(sizes, (str, int)) else tuple(sizes),
        ensembles=(ensembles,) if isinstance(ensembles, str) else tuple(ensembles),
        steps=steps,
        warmup=warmup,
        **md,
    )
    cells = _checked_cells(structure, settings, calculators)
    result = _new_result(settings, calculators, reference, calculator_info)
    total = len(cells) * len(settings.ensembles) * len(calculators) * settings.steps
    with tqdm(total=total, disable=not progress, unit="step", desc="bench") as bar:
        for size, atoms in cells.items():
            for ensemble in settings.ensembles:
                case = _run_case(calculators, atoms, size, ensemble, settings, series, bar)
                case["speed_ratio"] = _speed_ratio(case["runs"], reference)
                result.cases.append(case)
                if log:
                    _log_case(case, log)
    peak = peak_rss_bytes()
    result.process = {"peak_rss_MB": None if peak is None else peak / MB}
    return result


def _label(structure: str | Atoms) -> str:
    return structure.get_chemical_formula() if isinstance(structure, Atoms) else str(structure)


def _check_calculators(calculators: Mapping[str, BaseCalculator], reference: str | None) -> str:
    """Raise ``ValueError`` unless ``calculators`` are distinct ASE calculator objects and
    ``reference`` names one of them; return the reference's name."""
    if not calculators:
        raise ValueError("give at least one calculator (name → ASE calculator)")
    for name, calc in calculators.items():
        if not isinstance(calc, BaseCalculator):
            raise ValueError(
                f"calculator {name!r} is a {type(calc).__name__}, not an ASE calculator"
            )
    if len({id(calc) for calc in calculators.values()}) < len(calculators):
        raise ValueError(
            f"calculators {', '.join(calculators)} include the same object twice; interleaved "
            "runs need one calculator object each (build a second one)"
        )
    reference = reference or ("teacher" if "teacher" in calculators else next(iter(calculators)))
    if reference not in calculators:
        raise ValueError(
            f"reference {reference!r} is not one of the calculators: {', '.join(calculators)}"
        )
    return reference


def _checked_cells(
    structure: str | Atoms, settings: BenchmarkSettings, calculators: Mapping[str, BaseCalculator]
) -> dict[str | int, Atoms]:
    """The structure at each size; raise ``ValueError`` if any ensemble or calculator cannot
    run one of them (NPT needs a 3D cell and stress)."""
    cells = {size: sized_structure(structure, size) for size in settings.sizes}
    needs_stress = any(settings.for_ensemble(e).kind == "NPT" for e in settings.ensembles)
    for atoms in cells.values():
        for ensemble in settings.ensembles:
            check_structure_for(settings.for_ensemble(ensemble), atoms)
        for name, calc in calculators.items():
            check_compatible(calc, atoms, name, stress=needs_stress)
    return cells


def _new_result(
    settings: BenchmarkSettings,
    calculators: Mapping[str, BaseCalculator],
    reference: str,
    calculator_info: Mapping[str, dict] | None,
) -> BenchmarkResult:
    """A result with no cases yet: the machine, the settings and what each calculator is."""
    info = calculator_info or {}
    return BenchmarkResult(
        environment=environment_info(),
        settings=settings.to_dict(),
        calculators={
            name: dict(info.get(name, {"class": type(calc).__name__}), reference=name == reference)
            for name, calc in calculators.items()
        },
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _run_case(
    calculators: Mapping[str, BaseCalculator],
    atoms: Atoms,
    size: str | int,
    ensemble: str,
    settings: BenchmarkSettings,
    series: bool,
    bar,
) -> dict:
    """One MD per calculator from the same positions and velocities, interleaved; the case's
    metrics without its speed ratio."""
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
    _interleave(runs, settings.interleave_block or settings.steps, bar)
    return {
        "size": size,
        "n_atoms": len(start),
        "formula": start.get_chemical_formula(),
        "ensemble": ensemble,
        "kind": md_settings.kind,
        "integrator": md_settings.integrator,
        "runs": {
            name: run_metrics(run, len(start), settings.warmup, series)
            for name, run in runs.items()
        },
    }


def _interleave(runs: Mapping[str, MDRun], block: int, bar) -> None:
    """Advance the runs in turn ``block`` steps at a time until all have finished, so that
    machine noise hits all of them alike."""
    while not all(run.finished for run in runs.values()):
        for run in runs.values():
            if not run.finished:
                before = run.done_steps
                run.advance(block)
                bar.update(run.done_steps - before)
    bar.total -= sum(run.steps - run.done_steps for run in runs.values())  # stopped early
    bar.refresh()


def _log_case(case: dict, log: Callable[[str], None]) -> None:
    for name, m in case["runs"].items():
        p50 = (m["latency_s"] or {}).get("p50")
        log(
            f"{case['size']} ({case['n_atoms']} atoms) {case['ensemble']}: {name} "
            f"{'-' if p50 is None else f'{p50 * 1e3:.3f} ms/step'}"
            + (f" [{m['stopped']}]" if m["stopped"] else "")
        )
