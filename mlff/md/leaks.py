"""Leak check of a repeated call: RSS growth (fitted slope) and Python-heap growth
(tracemalloc), per call, with the lines whose allocations grew most."""

from __future__ import annotations

import sysconfig
import tracemalloc
from collections.abc import Callable

import numpy as np
from scipy.stats import linregress

from mlff.md.memory import MB, rss_bytes
from mlff.md.schema import finite_or_none

__all__ = ["leak_check"]
_FRAMES = 8  # traceback depth kept by tracemalloc


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


def leak_check(call: Callable[[], None], n: int, rss_limit_kB: float, heap_limit_kB: float) -> dict:
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
    sampled = np.isfinite(tail)  # RSS is NaN where the platform does not report it
    rss_slope = (
        float(linregress(np.arange(tail.size)[sampled], tail[sampled]).slope)
        if sampled.sum() >= 2
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
