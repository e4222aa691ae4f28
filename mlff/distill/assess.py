"""Is a student trustworthy over the user's domain? The teacher's physics, the student's
physics beside it, energy-hole scans and MD survival at the ends of the temperature range.

Used at the end of every distillation and by ``mlff compare STUDENT --teacher NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ase import Atoms, units
from ase.md.verlet import VelocityVerlet

from mlff.distill import sampling
from mlff.distill.physics import (
    CountingCalculator,
    PhysicsSettings,
    compare_physics,
    crystal_physics,
    liquid_physics,
    md_survival,
    total_calls,
)
from mlff.holes import hole_scans

__all__ = ["liquid_start", "teacher_physics", "student_physics", "survival", "assess_student"]


def liquid_start(atoms: Atoms, seed: int) -> Atoms:
    """The start of every liquid run of a seed: a random packing of its supercell, so teacher
    and student melt from the same configuration."""
    start, _, _ = next(sampling.packings(atoms, 1, seed=seed + 4243))
    return start


def teacher_physics(
    teacher, seeds: Sequence, top: float, settings: PhysicsSettings, seed: int
) -> tuple[dict, dict[str, list[Atoms]]]:
    """Physics of every bulk seed under ``teacher`` (crystal, and the liquid at ``top`` K) and
    the labelled liquid frames by seed name. ``calls`` totals the teacher evaluations."""
    counter = CountingCalculator(teacher)
    physics: dict = {"seeds": {}}
    frames: dict[str, list[Atoms]] = {}
    for s in seeds:
        if not s.bulk:
            continue
        result = crystal_physics(counter, s.cell, settings)
        liquid = liquid_physics(
            counter, liquid_start(s.atoms, seed), top, settings, keep_frames=True
        )
        frames[s.name] = liquid["liquid"].pop("frames")
        result.update(liquid)
        result["calls"] = total_calls(result)
        physics["seeds"][s.name] = result
    physics["calls"] = counter.calls
    return physics, frames


def student_physics(calc, s, top: float, settings: PhysicsSettings, seed: int) -> dict:
    """The same checks as :func:`teacher_physics` for one bulk seed, with the student."""
    result = crystal_physics(calc, s.cell, settings)
    result.update(liquid_physics(calc, liquid_start(s.atoms, seed), top, settings))
    return result


def survival(
    calc,
    atoms: Atoms,
    temperature: float,
    steps: int,
    timestep: float,
    seed: int,
    pressure: float | None = None,
    nve_steps: int = 0,
) -> dict:
    """Langevin MD of ``steps`` steps at ``temperature`` K (under ``pressure`` GPa with a
    barostat when given), then ``nve_steps`` of NVE: did it survive, how close did atoms come,
    and how much did the NVE energy drift (meV/atom/ps)?"""
    interval = max(1, steps // 200)
    frames = sampling.md_frames(
        atoms, calc, temperature, steps, interval, timestep, seed, pressure=pressure
    )
    collapsed = any(meta.get("before_collapse") for _, _, meta in frames)
    reached = max((meta["step"] for _, _, meta in frames), default=0)
    summary = md_survival([a for a, _, _ in frames]) if frames else {"finite": False}
    out = {
        "temperature_K": temperature,
        "pressure_GPa": pressure,
        "steps": steps,
        "time_ps": steps * timestep * 1e-3,
        "survived": not collapsed and reached >= steps - interval,
        "steps_reached": reached,
        **{k: summary.get(k) for k in ("finite", "closest_pair_A")},
    }
    if nve_steps and out["survived"]:
        out["nve"] = _nve_drift(calc, frames[-1][0], nve_steps, timestep)
    return out


def _nve_drift(calc, atoms: Atoms, steps: int, timestep: float) -> dict:
    work = atoms.copy()
    work.calc = calc
    dyn = VelocityVerlet(work, timestep * units.fs)
    frames, energies, times = [], [], []

    def record():
        frames.append(work.copy())
        energies.append(float(work.get_total_energy()))
        times.append(len(times) * 10 * timestep)

    dyn.attach(record, interval=10)
    dyn.run(steps)
    summary = md_survival(frames, energies, times, nve=True)
    return {"steps": steps, **summary}


def assess_student(
    calc,
    seeds: Sequence,
    levels: Sequence[float],
    pressure: float,
    reference: dict,
    settings: PhysicsSettings,
    survival_steps: int,
    timestep: float,
    seed: int,
    out: Path | None = None,
    tolerances: dict | None = None,
) -> dict:
    """Physics against ``reference`` (:func:`teacher_physics`' result), hole scans and MD
    survival of the student ``calc`` on every bulk seed; with ``out``, PNG plots there."""
    from mlff.distill.physics_plots import plot_physics

    result: dict = {"physics": {}, "holes": {}, "survival": {}, "plots": []}
    top, bottom = float(levels[-1]), float(levels[0])
    for k, s in enumerate(seeds):
        if not s.bulk:
            continue
        teacher = reference.get("seeds", {}).get(s.name)
        if teacher is not None:
            student = student_physics(calc, s, top, settings, seed)
            result["physics"][s.name] = {
                "teacher": teacher,
                "student": student,
                "comparison": compare_physics(teacher, student, tolerances),
            }
            if out is not None:
                folder = out / "physics" / _slug(s.name)
                folder.mkdir(parents=True, exist_ok=True)
                result["plots"] += [
                    str(Path("physics") / _slug(s.name) / Path(p).name)
                    for p in plot_physics(teacher, student, folder)
                ]
        scans = hole_scans(calc, s.atoms, start=0.8)
        result["holes"][s.name] = [scan.to_dict() for scan in scans]
        runs = {
            "top": survival(calc, s.atoms, top, survival_steps, timestep, seed + k, nve_steps=1000),
            "bottom": survival(calc, s.atoms, bottom, survival_steps, timestep, seed + k),
        }
        if pressure > 0:
            runs["pressure"] = survival(
                calc, s.atoms, top, survival_steps // 2, timestep, seed + k, pressure=pressure
            )
        result["survival"][s.name] = runs
    result["passed"] = {
        "physics": all(p["comparison"]["passed"] for p in result["physics"].values()),
        "holes": all(scan["passed"] for scans in result["holes"].values() for scan in scans),
        "survival": all(
            run["survived"] for runs in result["survival"].values() for run in runs.values()
        ),
    }
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)
