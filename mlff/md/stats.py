"""Summary and latency statistics shared by the MD tools."""

from __future__ import annotations

import numpy as np

__all__ = ["summary", "latency_stats"]


def summary(values) -> dict[str, float] | None:
    """mean, std, min, max of the finite entries of ``values``; ``None`` if there are none."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def latency_stats(seconds) -> dict[str, float] | None:
    """mean, std, min, p50, p95, p99, max of per-call times (same unit as the input: s)."""
    x = np.asarray(seconds, dtype=np.float64).ravel()
    if x.size == 0:
        return None
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(x.max()),
    }
