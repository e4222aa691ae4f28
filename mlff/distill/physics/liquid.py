"""MD of the liquid: survival, g(r), MSD and diffusion, :func:`liquid_physics`, and the g(r)
distance :func:`rdf_l1`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from mlff.distill.physics.counting import _attach, _cost, _counting
from mlff.distill.physics.settings import PhysicsSettings, _check_structure, _float

__all__ = [
    "liquid_physics",
    "md_survival",
    "radial_distribution",
    "mean_squared_displacement",
    "rdf_l1",
]

# ----------------------------------------------------------------------------------------------
# MD: survival, g(r), MSD, liquid


def _closest_pair(atoms: Atoms, cutoff: float) -> float | None:
    from mlff.distill.sampling import shortest_distance

    d = shortest_distance(atoms, cutoff)
    return d if math.isfinite(d) else None


def md_survival(
    frames: Sequence[Atoms],
    energies_eV: Sequence[float] | None = None,
    times_fs: Sequence[float] | None = None,
    nve: bool = False,
    pair_cutoff: float = 5.0,
) -> dict:
    """Did an MD run survive? Over recorded ``frames`` (and their total energies, eV, at
    ``times_fs``): finite (no NaN/inf positions or energies), first_nonfinite_frame,
    closest_pair_A (over all finite frames, None if no pair within ``pair_cutoff``),
    closest_pair_frame, and for an NVE run energy_drift (mlff.md.drift.energy_drift: meV/atom/ps).
    """
    if len(frames) == 0:
        raise ValueError("md_survival needs at least one frame, got none")
    bad = [i for i, f in enumerate(frames) if not np.isfinite(f.positions).all()]
    if energies_eV is not None:
        if len(energies_eV) != len(frames):
            raise ValueError(
                f"energies_eV has {len(energies_eV)} values for {len(frames)} frames; "
                "give one energy per frame"
            )
        bad += [i for i, e in enumerate(energies_eV) if not math.isfinite(float(e))]
    first_bad = min(bad) if bad else None
    closest, where = None, None
    for i, frame in enumerate(frames[: first_bad if first_bad is not None else len(frames)]):
        d = _closest_pair(frame, pair_cutoff)
        if d is not None and (closest is None or d < closest):
            closest, where = d, i
    drift = None
    if nve and energies_eV is not None and times_fs is not None:
        from mlff.md.drift import energy_drift

        try:
            drift = energy_drift(times_fs, energies_eV, len(frames[0])).to_dict()
        except ValueError:  # fewer than two finite samples
            drift = None
    return {
        "n_frames": len(frames),
        "finite": first_bad is None,
        "first_nonfinite_frame": first_bad,
        "closest_pair_A": closest,
        "closest_pair_frame": where,
        "energy_drift": drift,
    }


def radial_distribution(
    frames: Sequence[Atoms], r_max: float = 6.0, bins: int = 120
) -> tuple[np.ndarray, np.ndarray]:
    """Total g(r) averaged over periodic ``frames``: (r (bins,) Å bin centres, g (bins,)).

    Pairs come from ASE's neighbour list, so ``r_max`` may exceed half the cell; g → 1 at large
    r for a homogeneous liquid.
    """
    from ase.neighborlist import neighbor_list

    if len(frames) == 0:
        raise ValueError("radial_distribution needs at least one frame, got none")
    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    norm = 0.0
    for frame in frames:
        counts += np.histogram(neighbor_list("d", frame, r_max), bins=edges)[0]
        norm += len(frame) ** 2 / frame.get_volume()  # N · ρ
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # (bins,) Å³
    return 0.5 * (edges[1:] + edges[:-1]), counts / (norm * shell)


def _unwrap(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """(n_frames, n_atoms, 3) continuous trajectories: each frame-to-frame step is taken as its
    minimum image (valid while atoms move less than half a cell between frames)."""
    inv = np.linalg.inv(cell)
    steps = np.diff(positions, axis=0) @ inv  # fractional
    steps -= np.round(steps)
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps @ cell, axis=0)])


def mean_squared_displacement(
    positions: np.ndarray,
    masses: np.ndarray,
    dt_ps: float,
    max_lag_fraction: float = 0.5,
    per_atom: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """MSD(t) (Å²) of unwrapped ``positions`` (n_frames, n_atoms, 3) sampled every ``dt_ps``,
    averaged over every time origin (and over atoms unless ``per_atom``), after removing the
    centre-of-mass motion.

    Returns (lags_ps (n_lags,), msd_A2 (n_lags,) or (n_lags, n_atoms)) for lags
    0 … max_lag_fraction·(n_frames−1).
    """
    com = (positions * masses[None, :, None]).sum(axis=1) / masses.sum()  # (n_frames, 3)
    rel = positions - com[:, None, :]
    n_lags = max(1, int(max_lag_fraction * (len(rel) - 1)))
    msd = np.zeros((n_lags + 1, rel.shape[1]))  # (n_lags, n_atoms)
    for lag in range(1, n_lags + 1):
        msd[lag] = ((rel[lag:] - rel[:-lag]) ** 2).sum(axis=-1).mean(axis=0)
    return np.arange(n_lags + 1) * dt_ps, msd if per_atom else msd.mean(axis=1)


def _diffusion(lags: np.ndarray, msd: np.ndarray, window: tuple[float, float]) -> dict:
    from scipy.stats import linregress

    keep = (lags >= window[0] * lags[-1]) & (lags <= window[1] * lags[-1]) & (lags > 0)
    if keep.sum() < 3 or not np.isfinite(msd[keep]).all():
        return {"diffusion_A2_ps": None, "fit": None}
    fit = linregress(lags[keep], msd[keep])
    return {
        "diffusion_A2_ps": float(fit.slope / 6.0),
        "fit": {
            "start_ps": float(lags[keep][0]),
            "end_ps": float(lags[keep][-1]),
            "slope_A2_ps": float(fit.slope),
            "intercept_A2": float(fit.intercept),
            "r2": float(fit.rvalue**2),
        },
    }


def _md_dynamics(atoms: Atoms, temperature: float, settings: PhysicsSettings, nve: bool, rng):
    dt = settings.liquid_timestep_fs * units.fs
    if nve:
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    from ase.md.langevin import Langevin

    return Langevin(
        atoms,
        dt,
        temperature_K=temperature,
        friction=settings.liquid_friction_per_fs / units.fs,
        fixcm=False,  # the centre of mass is held by FixCom (ASE's advice since 3.28)
        rng=rng,
    )


def _advance(dyn, steps: int) -> str | None:
    """Run ``steps`` MD steps; the reason it stopped early, or None."""
    try:
        dyn.run(steps)
    except Exception as err:  # a calculator refusing a blown-up geometry ends the run, not us
        return f"{type(err).__name__}: {err}"
    atoms = dyn.atoms
    if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.get_momenta()).all()):
        return "non-finite positions or momenta"
    return None


def liquid_physics(
    calc: BaseCalculator,
    atoms: Atoms,
    temperature: float,
    settings: PhysicsSettings | None = None,
    keep_frames: bool = False,
) -> dict:
    """Langevin MD at ``temperature`` (K) from ``atoms`` (usually an already melted periodic
    configuration): g(r), self-diffusion, closest pair and survival.

    Velocities are drawn afresh (Maxwell–Boltzmann, ``seed``); ``liquid_equilibration`` Langevin
    steps, then ``liquid_steps`` production steps (Langevin, or NVE when
    ``liquid_production == "nve"``) recorded every ``liquid_interval`` steps. D = slope/6 of a
    line fitted to the multiple-origin MSD over ``msd_fit_window`` of the lags (see
    :func:`mean_squared_displacement`); Langevin friction slows diffusion, so compare D only
    between runs with the same settings. Noise, i.e. how much two independent runs like this one
    would differ: for g(r), L1 between the g(r) of the run's two halves, /√2 (rough: one sample,
    and non-stationarity counts as noise); for D, √2 · std(D_i)/√N over the atoms' own D_i.

    Returns {"liquid": {temperature_K, n_atoms, r_A, g_r, first_peak_A, first_peak_g,
    diffusion_A2_ps, diffusion_cm2_s, msd_lag_ps, msd_A2, msd_fit, mean_temperature_K,
    completed, error, survival (see :func:`md_survival`), g_r_noise_l1, diffusion_noise_A2_ps,
    calls}}, to merge with
    :func:`crystal_physics`' result. With ``keep_frames``, also ``frames``: the recorded
    production frames (ase.Atoms, each with a SinglePointCalculator holding the energy and
    forces computed during the run — labels at no extra call); pop them before serialising.
    """
    settings = settings or PhysicsSettings()
    _check_structure(atoms, "liquid_physics")
    _float("temperature", temperature, 0.0, 1e5)
    counter = _counting(calc)
    start = counter.tally()
    run = _run_liquid(_attach(atoms, counter), temperature, settings)
    nve = settings.liquid_production == "nve"
    frames = run["frames"]
    survival = md_survival(
        frames, run["energies"] or None, run["times"] or None, nve, settings.pair_cutoff
    )
    survival["finite"] = survival["finite"] and run["error"] is None
    good = frames[: survival["first_nonfinite_frame"]] if run["times"] else []
    result: dict[str, Any] = {
        "temperature_K": float(temperature),
        "n_atoms": len(atoms),
        "production": settings.liquid_production,
        "timestep_fs": settings.liquid_timestep_fs,
        "steps": settings.liquid_steps,
        "equilibration_steps": settings.liquid_equilibration,
        "completed": run["error"] is None,
        "error": run["error"],
        "mean_temperature_K": float(np.mean(run["temperatures"])) if run["times"] else None,
        "survival": survival,
        **_structure_and_diffusion(good if run["error"] is None else [], good, settings),
    }
    if keep_frames:
        result["frames"] = good
    return {"liquid": {**result, **_cost(counter, start)}}


def _run_liquid(md: Atoms, temperature: float, settings: PhysicsSettings) -> dict:
    """Equilibrate and run ``md`` (calculator attached); the recorded frames (calculator
    detached), total energies (eV), times (fs) and temperatures (K), and why it stopped early
    (None if it did not). Without a single recorded frame, ``frames`` holds ``md`` itself."""
    from ase.constraints import FixCom

    from mlff.thermal import thermalize

    rng = np.random.default_rng(settings.seed)
    md.set_constraint(FixCom())
    thermalize(md, temperature, rng=rng)
    md.set_momenta(md.get_momenta() - md.get_momenta().mean(axis=0))  # total momentum 0
    out: dict[str, Any] = {"frames": [], "energies": [], "times": [], "temperatures": []}
    out["error"] = (
        _advance(_md_dynamics(md, temperature, settings, False, rng), settings.liquid_equilibration)
        if settings.liquid_equilibration
        else None
    )
    dyn = _md_dynamics(md, temperature, settings, settings.liquid_production == "nve", rng)
    for k in range(settings.liquid_steps // settings.liquid_interval + 1):
        if out["error"] is not None:
            break
        if k:
            out["error"] = _advance(dyn, settings.liquid_interval)
            if out["error"] is not None:
                break
        out["frames"].append(_labelled_frame(md))
        out["energies"].append(float(md.get_potential_energy() + md.get_kinetic_energy()))
        out["times"].append(k * settings.liquid_interval * settings.liquid_timestep_fs)
        out["temperatures"].append(float(md.get_temperature()))
    if not out["frames"]:
        out["frames"] = [md]
    return out


def _labelled_frame(md: Atoms) -> Atoms:
    """A copy of ``md`` without constraints, carrying the energy and (unconstrained) forces
    its calculator already holds (no call)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = md.copy()
    frame.set_constraint()
    energy = md.get_potential_energy()
    forces = md.get_forces(apply_constraint=False)
    frame.calc = SinglePointCalculator(frame, energy=energy, free_energy=energy, forces=forces)
    return frame


def _structure_and_diffusion(
    msd_frames: list[Atoms], rdf_frames: list[Atoms], settings: PhysicsSettings
) -> dict:
    """g(r) over ``rdf_frames`` and D from ``msd_frames`` (a completed run's, ≥ 10 frames),
    with their noise estimates (see :func:`liquid_physics`)."""
    out: dict[str, Any] = dict.fromkeys(
        ("r_A", "g_r", "first_peak_A", "first_peak_g", "g_r_noise_l1", "diffusion_A2_ps",
         "diffusion_cm2_s", "diffusion_noise_A2_ps", "msd_lag_ps", "msd_A2", "msd_fit")
    )  # fmt: skip
    if rdf_frames:
        r, g = radial_distribution(rdf_frames, settings.rdf_r_max, settings.rdf_bins)
        peak = int(np.argmax(g))
        out.update(r_A=r.tolist(), g_r=g.tolist(), first_peak_A=float(r[peak]))
        out["first_peak_g"] = float(g[peak])
        half = len(rdf_frames) // 2
        if half >= 2:
            g1 = radial_distribution(rdf_frames[:half], settings.rdf_r_max, settings.rdf_bins)[1]
            g2 = radial_distribution(rdf_frames[half:], settings.rdf_r_max, settings.rdf_bins)[1]
            out["g_r_noise_l1"] = rdf_l1(r, g1, r, g2) / math.sqrt(2)
    if len(msd_frames) >= 10:
        d, noise, fit, lags, msd = _run_diffusion(msd_frames, settings)
        out.update(diffusion_A2_ps=d, msd_lag_ps=lags.tolist(), msd_A2=msd.tolist())
        out.update(diffusion_cm2_s=d * 1e-4 if d is not None else None, msd_fit=fit)
        out["diffusion_noise_A2_ps"] = noise
    return out


def _run_diffusion(frames: list[Atoms], settings: PhysicsSettings) -> tuple:
    """(D Å²/ps or None, its noise Å²/ps or None, fit summary, lags_ps, msd_A2) of a run's
    recorded frames. The noise is √2 · std(D_i)/√N over the atoms' own D_i (the same line fit
    to each atom's MSD; D is their mean): the difference two independent runs would show."""
    positions = _unwrap(np.array([f.positions for f in frames]), frames[0].cell.array)
    dt_ps = settings.liquid_interval * settings.liquid_timestep_fs * 1e-3
    lags, per_atom = mean_squared_displacement(
        positions, frames[0].get_masses(), dt_ps, settings.msd_max_lag, per_atom=True
    )
    msd = per_atom.mean(axis=1)
    fit = _diffusion(lags, msd, settings.msd_fit_window)
    noise = None
    if fit["fit"] is not None and per_atom.shape[1] > 1:
        keep = (lags >= fit["fit"]["start_ps"]) & (lags <= fit["fit"]["end_ps"])
        d_atoms = np.polyfit(lags[keep], per_atom[keep], 1)[0] / 6.0  # (n_atoms,)
        noise = float(math.sqrt(2.0) * d_atoms.std(ddof=1) / math.sqrt(len(d_atoms)))
    return fit["diffusion_A2_ps"], noise, fit["fit"], lags, msd


def rdf_l1(
    r_a: Sequence[float], g_a: Sequence[float], r_b: Sequence[float], g_b: Sequence[float]
) -> float:
    """∫|g_a − g_b| dr / ∫ g_b dr over b's grid [0, r_max] (g_a interpolated onto it)."""
    from scipy.integrate import trapezoid

    r_b, g_b = np.asarray(r_b, float), np.asarray(g_b, float)
    g_a = np.interp(r_b, np.asarray(r_a, float), np.asarray(g_a, float))
    return float(trapezoid(np.abs(g_a - g_b), r_b) / trapezoid(g_b, r_b))
