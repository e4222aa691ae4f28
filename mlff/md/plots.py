"""PNG plots of benchmark and validation results (matplotlib, Agg backend).

Each figure is saved to a temporary file in the target directory and renamed into place.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["plot_benchmark", "plot_validation"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from mlff.io import atomic_write

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    _pyplot().close(fig)
    return path


def _scale(ax, which: str, values) -> bool:
    """Log scale on axis ``which`` ("x"/"y") with 1-2-5 ticks when ``values`` span more than a
    factor of 20 (teacher and student side by side); linear otherwise. Returns True for log."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0 or values.max() < 20 * values.min():
        return False
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())
    return True


def _label(ax, title: str, xlabel: str, ylabel: str, legend_size: int = 7) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)


def _grid(result, plt, width: float = 3.6, height: float = 2.8):
    sizes = list(dict.fromkeys(c["size"] for c in result.cases))
    ensembles = list(dict.fromkeys(c["ensemble"] for c in result.cases))
    fig, axes = plt.subplots(
        len(sizes),
        len(ensembles),
        figsize=(width * len(ensembles), height * len(sizes)),
        squeeze=False,
    )
    cells = {
        (c["size"], c["ensemble"]): (
            axes[sizes.index(c["size"]), ensembles.index(c["ensemble"])],
            c,
        )
        for c in result.cases
    }
    return fig, cells


def plot_benchmark(result, out: str | Path) -> list[Path]:
    """``latency_histogram.png``, ``energy.png`` and ``scaling.png`` in ``out``; returns the paths.

    Needs the per-run ``series`` (``run_benchmark(series=True)``, the default)."""
    plt = _pyplot()
    out = Path(out)
    names = list(result.calculators)
    colors = {name: f"C{k}" for k, name in enumerate(names)}
    paths = []

    fig, cells = _grid(result, plt)
    for (size, ensemble), (ax, case) in cells.items():
        runs = {
            n: m for n, m in case["runs"].items() if m.get("series") and m["series"]["latency_s"]
        }
        all_ms = np.concatenate(
            [np.asarray(m["series"]["latency_s"]) * 1e3 for m in runs.values()] or [np.ones(1)]
        )
        lo, hi = max(all_ms.min(), 1e-4), max(all_ms.max(), 1e-4) * 1.01
        bins = np.geomspace(lo, hi, 40) if _scale(ax, "x", [lo, hi]) else np.linspace(lo, hi, 40)
        for name, m in runs.items():
            ms = np.asarray(m["series"]["latency_s"][m["warmup_steps"] :]) * 1e3
            ax.hist(ms, bins=bins, alpha=0.6, color=colors[name], label=name)
        _label(ax, f"{size} ({case['n_atoms']} atoms), {ensemble}", "time per step (ms)", "steps")
    paths.append(_save(fig, out / "latency_histogram.png"))

    fig, cells = _grid(result, plt)
    for (size, ensemble), (ax, case) in cells.items():
        for name, m in case["runs"].items():
            s = m.get("series")
            if not s or not s["time_ps"]:
                continue
            key = (
                "energy_conserved_eV_per_atom"
                if s["energy_conserved_eV_per_atom"]
                else "energy_total_eV_per_atom"
            )
            e = np.array([np.nan if v is None else v for v in s[key]])
            ax.plot(
                s["time_ps"],
                (e - e[0]) * 1e3,
                color=colors[name],
                lw=1,
                label=f"{name} ({'conserved' if key.startswith('energy_conserved') else 'total'})",
            )
        _label(
            ax, f"{size} ({case['n_atoms']} atoms), {ensemble}", "time (ps)", "E − E(0) (meV/atom)"
        )
    paths.append(_save(fig, out / "energy.png"))

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    ensembles = list(dict.fromkeys(c["ensemble"] for c in result.cases))
    markers = "osD^vP"
    sizes, times = [], []
    for name in names:
        for k, ensemble in enumerate(ensembles):
            points = sorted(
                (c["n_atoms"], c["runs"][name]["latency_s"]["p50"] * 1e3)
                for c in result.cases
                if c["ensemble"] == ensemble and c["runs"][name]["latency_s"]
            )
            if points:
                n, t = zip(*points, strict=True)  # (atoms, ms) pairs into two columns
                sizes += n
                times += t
                ax.plot(
                    n,
                    t,
                    marker=markers[k % len(markers)],
                    color=colors[name],
                    label=f"{name}, {ensemble}",
                )
    _scale(ax, "x", sizes)
    _scale(ax, "y", times)
    _label(ax, "time per step vs size", "atoms", "median time per MD step (ms)")
    paths.append(_save(fig, out / "scaling.png"))
    return paths


def plot_validation(
    series: Mapping[str, np.ndarray], n_atoms: int, target_K: float, out: str | Path
) -> list[Path]:
    """``validate_energy.png`` and ``validate_temperature.png`` from the NVE series."""
    plt = _pyplot()
    out = Path(out)
    t_ps = np.asarray(series["time_fs"]) * 1e-3
    total = (
        np.asarray(series["energy_potential"]) + np.asarray(series["energy_kinetic"])
    ) / n_atoms
    paths = []
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    if total.size:
        pot = np.asarray(series["energy_potential"]) / n_atoms
        ax.plot(t_ps, (pot - pot[0]) * 1e3, lw=0.6, alpha=0.6, color="C1", label="potential")
        # Drawn last: the conserved quantity must not hide under the potential's fluctuations.
        ax.plot(t_ps, (total - total[0]) * 1e3, lw=0.8, color="C0", label="total", zorder=3)
    _label(ax, "NVE energy", "time (ps)", "E − E(0) (meV/atom)", legend_size=8)
    paths.append(_save(fig, out / "validate_energy.png"))

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(t_ps, series["temperature_K"], lw=0.8)
    ax.axhline(target_K, color="0.5", ls="--", lw=1, label=f"target {target_K:g} K")
    _label(ax, "NVE temperature", "time (ps)", "temperature (K)", legend_size=8)
    paths.append(_save(fig, out / "validate_temperature.png"))
    return paths
