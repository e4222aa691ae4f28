"""The metrics of one finished MD run: latency, throughput, memory, energy drift, temperature,
pressure and volume, and optionally the sampled series (see ``docs/md.md`` for every field)."""

from __future__ import annotations

import numpy as np
from scipy.stats import linregress

from mlff.md.drift import energy_drift
from mlff.md.memory import MB
from mlff.md.runner import MDRun
from mlff.md.schema import finite_or_none
from mlff.md.stats import latency_stats, summary

__all__ = ["run_metrics"]


def _growth_per_1000(steps: np.ndarray, values: np.ndarray, warmup: int) -> float | None:
    """The fitted growth of ``values`` (bytes) after ``warmup`` steps, in MB per 1000 steps;
    ``None`` without two distinct sampled steps."""
    keep = (steps >= warmup) & np.isfinite(values)
    if keep.sum() < 2 or np.ptp(steps[keep]) == 0:
        return None
    return float(linregress(steps[keep], values[keep]).slope) * 1000.0 / MB


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
