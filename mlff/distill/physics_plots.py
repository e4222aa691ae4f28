"""PNG plots of teacher-vs-student physics (results of :mod:`mlff.distill.physics`).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch) and
written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase import units

from mlff.io import atomic_write

__all__ = ["plot_eos", "plot_phonons", "plot_rdf", "plot_physics"]

_STYLE = {"teacher": {"color": "C0", "ls": "-"}, "student": {"color": "C3", "ls": "--"}}


def _figure(width: float = 5.0, height: float = 3.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    path = Path(path)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    return path.name


def plot_eos(teacher: Mapping[str, Any], student: Mapping[str, Any], path: Path) -> str:
    """E/atom (eV) against V/atom (Å³): the points and the Birch–Murnaghan curves."""
    from ase.eos import birchmurnaghan

    fig = _figure()
    ax = fig.add_subplot()
    for label, result in (("teacher", teacher["eos"]), ("student", student["eos"])):
        n = result["n_atoms"]
        v, e = np.array(result["volumes_A3"]) / n, np.array(result["energies_eV"]) / n
        style = _STYLE[label]
        ax.plot(v, e, "o", color=style["color"], ms=4)
        if result.get("V0_A3") is not None:
            grid = np.linspace(v.min(), v.max(), 200)
            curve = birchmurnaghan(
                grid * n,
                result["E0_eV"],
                result["B0_GPa"] * units.GPa,
                result["B0_prime"],
                result["V0_A3"],
            )
            fit = f"V0 {result['V0_A3'] / n:.3f} Å³, B0 {result['B0_GPa']:.1f} GPa"
            ax.plot(grid, curve / n, **style, label=f"{label}: {fit}")
        else:
            ax.plot([], [], **style, label=f"{label}: fit failed")
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.set_title("equation of state")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _map_axis(x: np.ndarray, ticks: list[float], onto: list[float]) -> np.ndarray:
    """Stretch a band-path axis piecewise so its special points land on ``onto``."""
    if len(ticks) != len(onto):
        return x * (onto[-1] / ticks[-1])
    return np.interp(x, ticks, onto)


def plot_phonons(teacher: Mapping[str, Any], student: Mapping[str, Any], path: Path) -> str | None:
    """Phonon bands (THz) of both along the teacher's path when both have them, else the Γ
    frequencies side by side."""
    t, s = teacher["phonons"], student["phonons"]
    if not t.get("gamma_THz") or not s.get("gamma_THz"):
        return None  # skipped (see the result's "skipped")
    if t.get("bands") and s.get("bands") and t["bands"]["path"] == s["bands"]["path"]:
        fig = _figure(6.0, 4.0)
        ax = fig.add_subplot()
        ticks = t["bands"]["ticks"]
        for label, result in (("teacher", t), ("student", s)):
            bands = result["bands"]
            x = _map_axis(np.array(bands["x"]), bands["ticks"], ticks)
            freqs = np.array(bands["frequencies_THz"])  # (n_q, n_branches)
            for k in range(freqs.shape[1]):
                ax.plot(x, freqs[:, k], **_STYLE[label], lw=1, label=label if k == 0 else None)
        for tick in ticks:
            ax.axvline(tick, color="0.8", lw=0.6)
        ax.set_xticks(ticks)
        ax.set_xticklabels(["Γ" if lab == "G" else lab for lab in t["bands"]["labels"]])
        ax.set_xlim(ticks[0], ticks[-1])
        ax.set_ylabel("frequency (THz)")
        ax.set_title("phonon bands")
    else:
        fig = _figure()
        ax = fig.add_subplot()
        gt, gs = np.array(t["gamma_THz"]), np.array(s["gamma_THz"])
        idx = np.arange(max(len(gt), len(gs)))
        ax.bar(idx[: len(gt)] - 0.2, gt, width=0.4, color="C0", label="teacher")
        ax.bar(idx[: len(gs)] + 0.2, gs, width=0.4, color="C3", label="student")
        ax.set_xlabel("mode (sorted)")
        ax.set_ylabel("Γ frequency (THz)")
        ax.set_title("Γ-point phonons")
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_rdf(teacher: Mapping[str, Any], student: Mapping[str, Any], path: Path) -> str:
    """g(r) of the liquid runs, overlaid."""
    fig = _figure()
    ax = fig.add_subplot()
    for label, result in (("teacher", teacher["liquid"]), ("student", student["liquid"])):
        if result.get("g_r"):
            ax.plot(result["r_A"], result["g_r"], **_STYLE[label], label=label)
    ax.axhline(1.0, color="0.7", lw=0.6)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    temperature = teacher["liquid"].get("temperature_K")
    ax.set_title(f"radial distribution at {temperature:.0f} K" if temperature else "g(r)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_physics(teacher: Mapping[str, Any], student: Mapping[str, Any], out: Path) -> list[str]:
    """Write every plot both results allow into ``out``: physics_eos.png, physics_phonons.png,
    physics_rdf.png. Returns the file names written."""
    out = Path(out)
    names = []
    for section, name, plot in (
        ("eos", "physics_eos.png", plot_eos),
        ("phonons", "physics_phonons.png", plot_phonons),
        ("liquid", "physics_rdf.png", plot_rdf),
    ):
        if teacher.get(section) and student.get(section):
            written = plot(teacher, student, out / name)
            if written is not None:
                names.append(written)
    return names
