"""Per-call profile of a calculator: stage times with percentiles, a leak check, hotspots.

For mlff students (:class:`~mlff.calculators.SiteCalculator`) each force call is split with the
calculator's ``stage_timer`` hook into ``graph`` (neighbour list and edge vectors), ``forward``
(site energies and their edge gradients, which models return together), ``convert``
(forces/stress to numpy), and ``ase`` = the whole ``atoms.get_forces()`` call minus those
stages (ASE's state checks and copies, the calculator's Python glue). Other calculators get the
total only.

Each call first moves the atoms (a fresh small random displacement of the reference
positions), so nothing is served from the calculator's cache.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.md.hotspots import cprofile_hotspots, holds_torch_module, torch_hotspots
from mlff.md.leaks import leak_check
from mlff.md.loading import check_compatible
from mlff.md.stats import latency_stats

__all__ = ["STAGES", "StageTimer", "ProfileResult", "profile_calculator"]

#: Stages timed inside SiteCalculator.calculate, in order.
STAGES = ("graph", "forward", "convert")


class _Stage:
    __slots__ = ("timer", "name", "start")

    def __init__(self, timer: StageTimer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self):
        if self.timer.sync:
            self.timer.sync()
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        if self.timer.sync:
            self.timer.sync()
        self.timer.current[self.name] += time.perf_counter() - self.start
        self.timer.entries[self.name] += 1
        return False


class StageTimer:
    """``timer(name)`` is a context manager adding the wall time spent in it to
    ``current[name]`` (s). ``sync`` (e.g. ``torch.cuda.synchronize``) runs at both ends, so GPU
    work is charged to the stage that queued it."""

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync
        self.current: dict[str, float] = defaultdict(float)
        self.entries: dict[str, int] = defaultdict(int)

    def __call__(self, name: str) -> _Stage:
        return _Stage(self, name)

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        """The times and entry counts since the last ``take()``, then reset."""
        times, entries = dict(self.current), dict(self.entries)
        self.current.clear()
        self.entries.clear()
        return times, entries


@dataclass
class ProfileResult:
    """Per-call timing (``total`` and ``stages``, each latency statistics in s), the leak check
    and the hotspots. ``evaluations_per_call`` counts a student's model evaluations per call
    (1 with stress too on a 3D-periodic cell: the forces call caches the stress that ASE's NPT
    integrators ask for next); ``None`` for calculators that report no stages."""

    calculator: str
    formula: str
    n_atoms: int
    calls: int
    properties: list[str]
    total: dict
    stages: dict
    stage_share: dict
    evaluations_per_call: float | None
    leak: dict | None
    hotspots: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {"schema": "mlff.md.profile", "schema_version": 1, **asdict(self)}

    def summary(self) -> str:
        lines = [
            f"profile of {self.calculator} on {self.formula} ({self.n_atoms} atoms), "
            f"{self.calls} calls of {' + '.join(self.properties)}",
            f"{'stage':<10} {'mean':>9} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}  ms   share",
        ]
        for name, stats in [("total", self.total)] + list(self.stages.items()):
            share = self.stage_share.get(name)
            lines.append(
                f"{name:<10} "
                + " ".join(f"{stats[k] * 1e3:9.3f}" for k in ("mean", "p50", "p95", "p99", "max"))
                + (f"  {share * 100:5.1f} %" if share is not None else "")
            )
        if self.evaluations_per_call is not None:
            lines.append(f"model evaluations per call: {self.evaluations_per_call:.2f}")
        if self.leak:
            leak = self.leak
            lines.append(
                f"leak check over {leak['calls']} calls: "
                f"RSS {leak['rss_growth_kB_per_call']:+.2f} kB/call, "
                f"Python heap {leak['python_growth_kB_per_call']:+.3f} kB/call -> "
                f"{'LEAK SUSPECTED' if leak['leak_suspected'] else 'no leak seen'}"
            )
            for item in leak["top_python_growth"][:3]:
                lines.append(f"   {item['size_kB']:+9.1f} kB  {item['where']}")
        for source, rows in self.hotspots.items():
            lines.append(
                f"hotspots ({source}):"
                if rows
                else f"hotspots ({source}): none (no {source} operation ran)"
            )
            for row in rows[:8]:
                lines.append(
                    f"   {row['self_s'] * 1e3:9.2f} ms self  {row['calls']:>7} calls  {row['name']}"
                )
        return "\n".join(lines)


class _Workload:
    """The profiled call on a copy of the atoms. Each call first moves the atoms to a fresh
    random displacement (``displacement``, Å) of the reference positions, so nothing is served
    from the calculator's cache, then asks for what ``properties`` names."""

    def __init__(
        self,
        calc: BaseCalculator,
        atoms: Atoms,
        properties: tuple[str, ...],
        displacement: float,
        seed: int,
    ):
        self.atoms = atoms.copy()
        self.atoms.calc = calc
        self.properties = properties
        self._reference = self.atoms.positions.copy()  # (n_atoms, 3) Å
        self._displacement = displacement
        self._rng = np.random.default_rng(seed)

    def move(self) -> None:
        shape = self._reference.shape
        self.atoms.positions = self._reference + self._rng.normal(0.0, self._displacement, shape)

    def evaluate(self) -> None:
        # The order ASE's integrators ask in: forces first, stress (NPT) after.
        self.atoms.get_forces()
        if "stress" in self.properties:
            self.atoms.get_stress()

    def __call__(self) -> None:
        self.move()
        self.evaluate()


@dataclass
class _CallTimes:
    """What the timed calls measured: each call's wall time (s), each stage's time per call
    (s), how many model evaluations (``graph`` stages) each call ran, and which stages the
    calculator entered at all."""

    totals: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    evaluations: list[int] = field(default_factory=list)
    entered: set[str] = field(default_factory=set)

    def add_stages(self, times: dict[str, float], entries: dict[str, int]) -> None:
        self.entered.update(entries)
        for stage in STAGES:
            self.stages.setdefault(stage, []).append(times.get(stage, 0.0))
        self.evaluations.append(entries.get("graph", 0))


def profile_calculator(
    calc: BaseCalculator,
    atoms: Atoms,
    calls: int = 100,
    warmup: int = 5,
    properties: tuple[str, ...] = ("energy", "forces"),
    leak_calls: int = 400,
    hotspot_calls: int = 20,
    top: int = 15,
    displacement: float = 0.01,
    seed: int = 0,
    rss_limit_kB_per_call: float = 16.0,
    heap_limit_kB_per_call: float = 1.0,
    progress: bool = False,
) -> ProfileResult:
    """Profile ``calc`` on a copy of ``atoms``: ``calls`` timed calls (after ``warmup``), a leak
    check over ``leak_calls`` calls (0 to skip; growth is measured over the second half) and
    the hotspots of ``hotspot_calls`` calls from cProfile and torch.profiler (0 to skip).

    ``properties``: ``("energy", "forces")`` as in NVE/NVT, or add ``"stress"`` as in NPT.
    A leak is suspected when RSS grows by more than ``rss_limit_kB_per_call`` (fitted slope) or
    the Python heap (tracemalloc) by more than ``heap_limit_kB_per_call`` per call.
    """
    properties = _check_arguments(
        calls, warmup, properties, leak_calls, hotspot_calls, top, displacement
    )
    check_compatible(calc, atoms, type(calc).__name__, stress="stress" in properties)
    workload = _Workload(calc, atoms, properties, displacement, seed)
    times = _time_calls(workload, calc, calls, warmup, progress)
    leak = (
        leak_check(workload, leak_calls, rss_limit_kB_per_call, heap_limit_kB_per_call)
        if leak_calls
        else None
    )
    hotspots = _hotspots(workload, calc, hotspot_calls, top) if hotspot_calls else {}
    return _summarise(calc, workload, times, leak, hotspots)


def _check_arguments(
    calls: int,
    warmup: int,
    properties: tuple[str, ...],
    leak_calls: int,
    hotspot_calls: int,
    top: int,
    displacement: float,
) -> tuple[str, ...]:
    """Raise ``ValueError`` on a bad setting; return ``properties`` in canonical order, with
    ``"energy"`` (which every call gives)."""
    if leak_calls in (1, 2, 3):
        raise ValueError(f"leak_calls must be 0 (no leak check) or >= 4, got {leak_calls}")
    for name, value, low in (
        ("calls", calls, 1),
        ("warmup", warmup, 0),
        ("leak_calls", leak_calls, 0),
        ("hotspot_calls", hotspot_calls, 0),
        ("top", top, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    known = ("energy", "forces", "stress")
    unknown = [p for p in properties if p not in known]
    if unknown or "forces" not in properties:
        raise ValueError(
            f"properties {list(properties)!r}: accepted are energy, forces (required) and stress"
        )
    if not displacement >= 0:
        raise ValueError(f"displacement must be >= 0 Å, got {displacement!r}")
    return tuple(p for p in known if p in properties or p == "energy")


def _is_student(calc: BaseCalculator) -> bool:
    """Whether ``calc`` is an mlff calculator, whose calls report their stages."""
    from mlff.calculators import SiteCalculator

    return isinstance(calc, SiteCalculator)


def _on_cuda(calc: BaseCalculator) -> bool:
    return _is_student(calc) and calc.device.type == "cuda"


def _time_calls(
    workload: _Workload, calc: BaseCalculator, calls: int, warmup: int, progress: bool
) -> _CallTimes:
    """``warmup`` untimed calls, then ``calls`` timed ones. A student's stages are timed
    through its ``stage_timer`` hook, which is taken off again afterwards."""
    from tqdm.auto import tqdm

    timer = None
    if _is_student(calc):
        import torch

        # Synchronised at each stage boundary, so GPU work is charged to the stage that queued it.
        timer = StageTimer(torch.cuda.synchronize if _on_cuda(calc) else None)
        calc.stage_timer = timer
    times = _CallTimes()
    try:
        for _ in range(warmup):
            workload()
        if timer:
            timer.take()
        for _ in tqdm(range(calls), disable=not progress, desc="profile", unit="call"):
            workload.move()  # outside the timed span: the calculator does not see it
            t0 = time.perf_counter()
            workload.evaluate()
            times.totals.append(time.perf_counter() - t0)
            if timer:
                times.add_stages(*timer.take())
    finally:
        if timer:
            calc.stage_timer = None
    return times


def _stage_statistics(times: _CallTimes) -> dict[str, dict]:
    """Latency statistics of each stage the calculator entered, and of ``ase``: the rest of
    the call. Empty for calculators that report no stages."""
    if not times.stages:
        return {}
    stage_sum = np.sum([times.stages[s] for s in STAGES], axis=0)  # (calls,) s
    # A stage never entered (e.g. every call served from the calculator's cache) is left out.
    per_stage = {name: values for name, values in times.stages.items() if name in times.entered}
    per_stage["ase"] = list(np.maximum(np.asarray(times.totals) - stage_sum, 0.0))
    return {name: latency_stats(values) for name, values in per_stage.items()}


def _hotspots(
    workload: _Workload, calc: BaseCalculator, calls: int, top: int
) -> dict[str, list[dict]]:
    """The ``top`` functions by self time from cProfile, and the top torch operators where
    ``calc`` runs torch (an mlff student, SevenNet, CHGNet, MACE …)."""
    hotspots = {"cprofile": cprofile_hotspots(workload, calls, top)}
    if _is_student(calc) or holds_torch_module(calc):
        hotspots["torch"] = torch_hotspots(workload, calls, top, _on_cuda(calc))
    return hotspots


def _summarise(
    calc: BaseCalculator,
    workload: _Workload,
    times: _CallTimes,
    leak: dict | None,
    hotspots: dict[str, list[dict]],
) -> ProfileResult:
    from mlff.md.environment import environment_info

    stages = _stage_statistics(times)
    mean_total = float(np.mean(times.totals))
    share = (
        {name: stats["mean"] / mean_total for name, stats in stages.items()}
        if mean_total > 0
        else {}
    )
    return ProfileResult(
        calculator=type(calc).__name__,
        formula=workload.atoms.get_chemical_formula(),
        n_atoms=len(workload.atoms),
        calls=len(times.totals),
        properties=list(workload.properties),
        total=latency_stats(times.totals),
        stages=stages,
        stage_share=share,
        evaluations_per_call=float(np.mean(times.evaluations)) if times.evaluations else None,
        leak=leak,
        hotspots=hotspots,
        environment=environment_info(),
    )
