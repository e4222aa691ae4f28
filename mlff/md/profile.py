"""Per-call profile of a calculator: stage times with percentiles, a leak check, hotspots.

For mlff students (:class:`~mlff.calculators.SiteCalculator`) each force call is split with the
calculator's ``stage_timer`` hook into ``graph`` (neighbour list and tensors), ``forward``
(site energies), ``backward`` (autograd), ``convert`` (forces/stress to numpy), and
``ase`` = the whole ``atoms.get_forces()`` call minus those stages (ASE's state checks and
copies, the calculator's Python glue). Other calculators get the total only.

Each call first moves the atoms (a fresh small random displacement of the reference
positions), so nothing is served from the calculator's cache.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sysconfig
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.md.calculators import check_compatible
from mlff.md.memory import MB, rss_bytes
from mlff.md.schema import finite_or_none
from mlff.md.stats import latency_stats, linear_fit

__all__ = ["STAGES", "StageTimer", "ProfileResult", "profile_calculator"]

#: Stages timed inside SiteCalculator.calculate, in order.
STAGES = ("graph", "forward", "backward", "convert")


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
    and the hotspots. ``evaluations_per_call`` counts model evaluations per call (2 where stress
    is asked for separately after forces, as ASE's NPT integrators do)."""

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
            f"profile of {self.calculator} on {self.formula} ({self.n_atoms} atoms), {self.calls} calls of "
            f"{' + '.join(self.properties)}",
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
                f"leak check over {leak['calls']} calls: RSS {leak['rss_growth_kB_per_call']:+.2f} kB/call, "
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


def _mover(atoms: Atoms, displacement: float, seed: int) -> Callable[[], None]:
    reference = atoms.positions.copy()
    rng = np.random.default_rng(seed)

    def move() -> None:
        atoms.positions = reference + rng.normal(0.0, displacement, reference.shape)

    return move


def _call(atoms: Atoms, properties: tuple[str, ...]) -> None:
    # The order ASE's integrators ask in: forces first, stress (NPT) after.
    atoms.get_forces()
    if "stress" in properties:
        atoms.get_stress()


def _cprofile_hotspots(call: Callable[[], None], n: int, top: int) -> list[dict]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _) in stats.stats.items():
        rows.append(
            {
                "name": f"{func} ({filename.rsplit('/', 2)[-1] if '/' in filename else filename}:{line})",
                "calls": int(nc),
                "self_s": tt / n,
                "cumulative_s": ct / n,
            }
        )
    rows.sort(key=lambda r: r["self_s"], reverse=True)
    return rows[:top]


def _uses_torch(calc: BaseCalculator) -> bool:
    """Whether the calculator holds a torch module (SevenNet, CHGNet, MACE … do)."""
    import torch

    return any(isinstance(v, torch.nn.Module) for v in vars(calc).values())


def _torch_hotspots(call: Callable[[], None], n: int, top: int, cuda: bool) -> list[dict]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(n):
            call()
    if cuda:
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        row = {
            "name": event.key,
            "calls": int(event.count) // n if n else int(event.count),
            "self_s": event.self_cpu_time_total * 1e-6 / n,
            "cumulative_s": event.cpu_time_total * 1e-6 / n,
        }
        if cuda:
            row["self_device_s"] = getattr(event, "self_device_time_total", 0.0) * 1e-6 / n
        rows.append(row)
    rows.sort(key=lambda r: r["self_s"], reverse=True)
    return rows[:top]


_FRAMES = 8  # traceback depth kept by tracemalloc in the leak check


def _where(traceback: tracemalloc.Traceback) -> str:
    """The most recent frame outside installed packages and the standard library (the line
    that asked for the memory), with the allocating frame after it when that differs."""
    stdlib = sysconfig.get_paths()["stdlib"]
    frames = list(traceback)[::-1]  # tracemalloc lists the oldest frame first
    inner = frames[0]
    for frame in frames:
        if "site-packages" not in frame.filename and not frame.filename.startswith(stdlib):
            text = f"{frame.filename}:{frame.lineno}"
            return (
                text if frame is inner else f"{text} (allocated in {inner.filename}:{inner.lineno})"
            )
    return f"{inner.filename}:{inner.lineno}"


def _leak_check(
    call: Callable[[], None], n: int, rss_limit_kB: float, heap_limit_kB: float
) -> dict:
    """Run ``n`` calls under tracemalloc. The first half lets caches and the allocator settle;
    growth is measured over the second half only: the RSS slope (least squares, one sample per
    call) and the Python-heap difference between the two snapshots."""
    half = n // 2
    tracemalloc.start(_FRAMES)
    try:
        rss = []
        for k in range(n):
            if k == half:
                before = tracemalloc.take_snapshot()
            call()
            rss.append(rss_bytes())
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    measured = n - half
    diff = after.compare_to(before, "traceback")
    heap = sum(d.size_diff for d in diff)
    rss_values = np.array([np.nan if r is None else r for r in rss], dtype=np.float64)
    tail = rss_values[half:]
    rss_slope = (
        linear_fit(np.arange(tail.size), tail).slope
        if np.isfinite(tail).sum() >= 2
        else float("nan")
    )
    rss_kB, heap_kB = rss_slope / 1024.0, heap / measured / 1024.0
    return {
        "calls": n,
        "measured_calls": measured,
        "rss_start_MB": finite_or_none(rss_values[0] / MB),
        "rss_end_MB": finite_or_none(rss_values[-1] / MB),
        "rss_growth_kB_per_call": finite_or_none(rss_kB),
        "python_growth_kB_per_call": float(heap_kB),
        "limits_kB_per_call": {"rss": rss_limit_kB, "python": heap_limit_kB},
        "leak_suspected": bool(
            (np.isfinite(rss_kB) and rss_kB > rss_limit_kB) or heap_kB > heap_limit_kB
        ),
        "top_python_growth": [
            {"where": _where(d.traceback), "size_kB": d.size_diff / 1024.0, "count": d.count_diff}
            for d in diff[:10]
            if d.size_diff
        ],
    }


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
    from tqdm.auto import tqdm

    from mlff.calculators import SiteCalculator

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
    properties = tuple(p for p in known if p in properties or p == "energy")
    if not displacement >= 0:
        raise ValueError(f"displacement must be >= 0 Å, got {displacement!r}")
    check_compatible(calc, atoms, type(calc).__name__, stress="stress" in properties)

    work = atoms.copy()
    work.calc = calc
    move = _mover(work, displacement, seed)

    def call() -> None:
        move()
        _call(work, properties)

    staged = isinstance(calc, SiteCalculator)
    cuda = staged and calc.device.type == "cuda"
    timer = None
    if staged:
        import torch

        timer = StageTimer(torch.cuda.synchronize if cuda else None)
        calc.stage_timer = timer
    totals: list[float] = []
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES} if staged else {}
    evaluations: list[int] = []
    seen: set[str] = set()
    try:
        for _ in range(warmup):
            call()
        if timer:
            timer.take()
        for _ in tqdm(range(calls), disable=not progress, desc="profile", unit="call"):
            move()
            t0 = time.perf_counter()
            _call(work, properties)
            totals.append(time.perf_counter() - t0)
            if timer:
                times, entries = timer.take()
                seen.update(entries)
                for stage in STAGES:
                    per_stage[stage].append(times.get(stage, 0.0))
                evaluations.append(entries.get("graph", 0))
    finally:
        if staged:
            calc.stage_timer = None
    totals_arr = np.asarray(totals)
    stages = {}
    if staged:
        stage_sum = np.sum([per_stage[s] for s in STAGES], axis=0)
        # A stage the calculator never entered (e.g. no separate backward pass) is left out.
        per_stage = {name: values for name, values in per_stage.items() if name in seen}
        per_stage["ase"] = list(np.maximum(totals_arr - stage_sum, 0.0))
        stages = {name: latency_stats(values) for name, values in per_stage.items()}
    mean_total = float(totals_arr.mean())
    share = (
        {name: stats["mean"] / mean_total for name, stats in stages.items()}
        if mean_total > 0
        else {}
    )
    leak = (
        _leak_check(call, leak_calls, rss_limit_kB_per_call, heap_limit_kB_per_call)
        if leak_calls
        else None
    )
    hotspots = {}
    if hotspot_calls:
        hotspots["cprofile"] = _cprofile_hotspots(call, hotspot_calls, top)
        if staged or _uses_torch(calc):
            hotspots["torch"] = _torch_hotspots(call, hotspot_calls, top, cuda)
    from mlff.md.environment import environment_info

    return ProfileResult(
        calculator=type(calc).__name__,
        formula=work.get_chemical_formula(),
        n_atoms=len(work),
        calls=calls,
        properties=list(properties),
        total=latency_stats(totals),
        stages=stages,
        stage_share=share,
        evaluations_per_call=float(np.mean(evaluations)) if evaluations else None,
        leak=leak,
        hotspots=hotspots,
        environment=environment_info(),
    )
