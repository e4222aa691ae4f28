"""Summary statistics and the least-squares line shared by the MD tools."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["summary", "latency_stats", "LineFit", "linear_fit"]


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


@dataclass(frozen=True)
class LineFit:
    """y ≈ slope·x + intercept by ordinary least squares.

    ``slope_stderr`` is the textbook standard error, which assumes uncorrelated residuals (MD
    series are correlated, so treat it as a lower bound). ``residual_std`` is the standard
    deviation of the residuals (the detrended series).
    """

    slope: float
    intercept: float
    slope_stderr: float
    residual_std: float
    n: int


def linear_fit(x, y) -> LineFit:
    """Least-squares line through the finite (x, y) pairs; needs at least two distinct x."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError(f"a line needs at least two distinct x values, got {x.size} point(s)")
    xm, ym = x.mean(), y.mean()
    dx = x - xm  # centred: a well-conditioned fit even for large offsets
    sxx = float(dx @ dx)
    slope = float(dx @ (y - ym)) / sxx
    intercept = float(ym - slope * xm)
    resid = y - (slope * x + intercept)
    dof = max(x.size - 2, 1)
    stderr = float(np.sqrt((resid @ resid) / dof / sxx))
    return LineFit(slope, intercept, stderr, float(resid.std()), int(x.size))
