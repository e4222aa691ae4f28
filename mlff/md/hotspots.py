"""Hotspots of a repeated call: the functions (cProfile) and torch operators (torch.profiler)
with the most self time per call."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable

from ase.calculators.calculator import BaseCalculator

__all__ = ["cprofile_hotspots", "holds_torch_module", "torch_hotspots"]


def cprofile_hotspots(call: Callable[[], None], n: int, top: int) -> list[dict]:
    """The ``top`` functions by self time over ``n`` calls of ``call``: rows of ``name``
    (function, file and line), ``calls``, ``self_s`` and ``cumulative_s`` per call (s)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, func), (_, nc, tt, ct, _) in stats.stats.items():
        where = filename.rsplit("/", 2)[-1] if "/" in filename else filename
        rows.append(
            {
                "name": f"{func} ({where}:{line})",
                "calls": int(nc),
                "self_s": tt / n,
                "cumulative_s": ct / n,
            }
        )
    rows.sort(key=lambda r: r["self_s"], reverse=True)
    return rows[:top]


def holds_torch_module(calc: BaseCalculator) -> bool:
    """Whether the calculator holds a torch module (SevenNet, CHGNet, MACE … do)."""
    import torch

    return any(isinstance(v, torch.nn.Module) for v in vars(calc).values())


def torch_hotspots(call: Callable[[], None], n: int, top: int, cuda: bool) -> list[dict]:
    """The ``top`` torch operators by self CPU time over ``n`` calls of ``call``, as rows of
    :func:`cprofile_hotspots`; with ``cuda`` also ``self_device_s``, the device time per call."""
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
