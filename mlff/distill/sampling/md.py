"""The molecular-dynamics generators (:func:`md_frames`, :func:`melt`, :func:`melt_quench`):
Langevin MD with a calculator the caller gives, in phases, with an optional barostat and a
safe stop when the structure falls apart."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units

from mlff.distill.sampling.common import (
    _COLLAPSE_DISTANCE,
    Candidate,
    _rng,
    shortest_distance,
)

# ---------------------------------------------------------------- molecular dynamics


@dataclass(frozen=True)
class _Phase:
    """A stretch of Langevin MD: up to ``steps`` steps with the thermostat's target going
    linearly from ``start`` to ``end`` K. A phase ``until_melted`` ends as soon as the structure
    has lost its start order (:func:`_has_melted`), and its unused steps go to the next phase."""

    name: str
    start: float
    end: float
    steps: int
    until_melted: bool = False


#: Errors a calculator raises on a structure that has fallen apart (overlapping atoms, atoms
#: flung beyond the coordinate range, NaN); caught during MD and treated as a collapse. The
#: first force call is made outside this net, so a calculator that cannot evaluate the start
#: structure at all raises.
_COLLAPSE_ERRORS = (ValueError, FloatingPointError, OverflowError, ZeroDivisionError)

#: The isotropic Berendsen barostat of the MD generators: time constant (fs), the bulk modulus
#: it assumes (GPa; only sets how fast the volume relaxes), the largest linear change of the
#: cell per check, and the volume range (× the start's) beyond which the cell has run away.
_BAROSTAT_TAU_FS = 200.0
_BAROSTAT_BULK_MODULUS_GPA = 100.0
_BAROSTAT_MAX_SCALE = 0.01
_BAROSTAT_VOLUME_RANGE = (0.5, 2.0)

#: Melted: half the atoms have moved more than this fraction of the start structure's shortest
#: interatomic distance from where they started (centre-of-mass drift removed). A hot crystal's
#: atoms vibrate about their sites (rms ~0.1–0.2 of it even well past melting); a liquid's
#: diffuse away.
_MELT_DISPLACEMENT = 0.35


def _check_md_args(steps, interval, timestep, temperatures, friction) -> None:
    for name, value in (("steps", steps), ("interval", interval)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (np.isfinite(timestep) and timestep > 0):
        raise ValueError(f"timestep must be a positive number of fs, got {timestep!r}")
    if not (np.isfinite(friction) and friction > 0):
        raise ValueError(f"friction must be a positive number (1/fs), got {friction!r}")
    for t in temperatures:
        if not (np.isfinite(t) and t >= 0):
            raise ValueError(f"temperatures must be finite numbers of K >= 0, got {t!r}")


def _has_melted(work: Atoms, start: np.ndarray, threshold2: float, fractional: bool) -> bool:
    """Whether the median squared displacement from ``start`` (COM drift removed) exceeds
    ``threshold2`` Å². MD positions are not wrapped, so displacements need no minimum image.
    With ``fractional``, ``start`` holds fractional coordinates and displacements are measured
    in the current cell (a barostat's rescaling is no displacement)."""
    if fractional:
        cell = work.cell.array
        moved = (work.positions @ np.linalg.inv(cell) - start) @ cell  # (n_atoms, 3)
    else:
        moved = work.positions - start  # (n_atoms, 3)
    masses = work.get_masses()
    moved -= masses @ moved / masses.sum()
    return bool(np.median(np.einsum("ij,ij->i", moved, moved)) > threshold2)


def _run_md(
    atoms: Atoms,
    calc,
    phases: Sequence[_Phase],
    interval: int,
    timestep: float,
    seed: int,
    config_type: str,
    generator: str,
    *,
    start_temperature: float,
    friction: float,
    check_every: int,
    keep_before_collapse: int,
    min_distance: float,
    blowup_factor: float,
    pressure: float | None,
    extra: dict,
) -> list[Candidate]:
    """Langevin MD through ``phases``; see :func:`md_frames` for frames, collapse and the
    barostat."""
    from ase.md.langevin import Langevin

    from mlff.thermal import thermalize

    if not isinstance(check_every, (int, np.integer)) or check_every < 1:
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
    if not isinstance(keep_before_collapse, (int, np.integer)) or keep_before_collapse < 0:
        raise ValueError(
            f"keep_before_collapse must be an integer >= 0, got {keep_before_collapse!r}"
        )
    if not (np.isfinite(min_distance) and min_distance > 0):
        raise ValueError(f"min_distance must be a positive number of Å, got {min_distance!r}")
    if not (np.isfinite(blowup_factor) and blowup_factor > 1):
        raise ValueError(f"blowup_factor must be a number > 1, got {blowup_factor!r}")
    work = atoms.copy()
    work.calc = calc
    closest = shortest_distance(work, 6.0)
    if not closest >= min_distance:
        raise ValueError(
            f"the start structure has atoms {closest:.3f} Å apart "
            f"(at least {min_distance} Å needed)"
        )
    if pressure is not None and not np.isfinite(pressure):
        raise ValueError(f"pressure must be a finite number of GPa or None, got {pressure!r}")
    work.get_forces()  # outside the collapse net: a calculator that cannot start raises
    barostat = pressure is not None and bool(work.pbc.all())
    if barostat:
        try:
            work.get_stress()
        except Exception as err:
            raise ValueError(
                f"pressure control needs a calculator that gives stress ({err}); "
                "pass pressure=None for constant volume"
            ) from err
        start = work.get_scaled_positions(wrap=False)
    else:
        start = work.positions.copy()
    volume0 = work.get_volume() if barostat else None
    melt2 = (_MELT_DISPLACEMENT * (closest if np.isfinite(closest) else 2.0)) ** 2
    rng = _rng(seed)
    thermalize(work, start_temperature, rng=rng)
    dyn = Langevin(
        work,
        timestep * units.fs,
        temperature_K=phases[0].start,
        friction=friction / units.fs,
        rng=rng,
        fixcm=False,
    )
    hottest = max([start_temperature, 100.0] + [max(p.start, p.end) for p in phases])
    ceiling = blowup_factor * hottest
    frames: list[Candidate] = []
    recent: deque = deque(maxlen=keep_before_collapse or 1)  # (step, frame index or candidate)
    step, melted_step, carry = 0, None, 0

    def snapshot(phase: _Phase, target: float) -> Candidate:
        frame = work.copy()
        frame.calc = None
        meta = {
            "generator": generator,
            "temperature": float(target),
            "kinetic_temperature": float(work.get_temperature()),
            "step": step,
            "time_fs": step * timestep,
            "phase": phase.name,
            "pressure": pressure if barostat else None,
            "seed": seed,
            **extra,
        }
        if barostat:
            meta["volume"] = float(work.get_volume())
        if any(p.until_melted for p in phases):
            meta["melted_step"] = melted_step
        return frame, config_type, meta

    for phase in phases:
        total, done = phase.steps + carry, 0
        carry = 0
        while done < total:
            if phase.until_melted and melted_step is not None:
                carry = total - done
                break
            chunk = min(check_every, total - done, interval - step % interval)
            target = phase.start + (phase.end - phase.start) * min(1.0, (done + chunk) / total)
            dyn.set_temperature(temperature_K=target)
            reason = None
            try:
                with np.errstate(all="ignore"):
                    dyn.run(chunk)
            except _COLLAPSE_ERRORS as err:
                reason = f"{type(err).__name__}: {err}"
            step += chunk
            done += chunk
            if reason is None and barostat:
                reason = _barostat(work, pressure, chunk * timestep, volume0)
            if reason is None:
                reason = _fell_apart(work, min_distance, ceiling)
            if reason is not None:
                return _with_before_collapse(frames, recent, keep_before_collapse, step, reason)
            if (
                melted_step is None
                and phase.until_melted
                and _has_melted(work, start, melt2, fractional=barostat)
            ):
                melted_step = step
            if step % interval == 0:
                frames.append(snapshot(phase, target))
                recent.append((step, len(frames) - 1))
            elif keep_before_collapse:
                recent.append((step, snapshot(phase, target)))
    return frames


def _barostat(work: Atoms, pressure: float, elapsed_fs: float, volume0: float) -> str | None:
    """Rescale the cell (and positions) isotropically towards ``pressure`` GPa, Berendsen's
    way, for ``elapsed_fs`` fs of MD; the reason the structure has fallen apart, or None."""
    try:
        with np.errstate(all="ignore"):
            stress = work.get_stress(include_ideal_gas=True)
    except _COLLAPSE_ERRORS as err:
        return f"{type(err).__name__}: {err}"
    current = -float(np.mean(stress[:3])) / units.GPa
    if not np.isfinite(current):
        return "non-finite stress"
    rate = elapsed_fs / _BAROSTAT_TAU_FS / _BAROSTAT_BULK_MODULUS_GPA
    scale = np.cbrt(max(1.0 - rate * (pressure - current), 1e-3))
    scale = float(np.clip(scale, 1.0 - _BAROSTAT_MAX_SCALE, 1.0 + _BAROSTAT_MAX_SCALE))
    work.set_cell(work.cell.array * scale, scale_atoms=True)
    ratio = work.get_volume() / volume0
    low, high = _BAROSTAT_VOLUME_RANGE
    if not low <= ratio <= high:
        return f"the cell ran away to {ratio:.2f} × its start volume (pressure {current:.3g} GPa)"
    return None


def _fell_apart(work: Atoms, min_distance: float, ceiling: float) -> str | None:
    """Why the structure has fallen apart, or None: non-finite positions, a kinetic temperature
    above ``ceiling`` K, or two atoms closer than ``min_distance`` Å (minimum image)."""
    if not np.isfinite(work.positions).all() or not np.isfinite(work.get_momenta()).all():
        return "non-finite positions or momenta"
    temperature = work.get_temperature()
    if temperature > ceiling:
        return f"kinetic temperature {temperature:.0f} K above {ceiling:.0f} K"
    closest = shortest_distance(work, min_distance)
    if closest < min_distance:
        return f"two atoms {closest:.3f} Å apart"
    return None


def _with_before_collapse(
    frames: list[Candidate], recent: deque, keep: int, step: int, reason: str
) -> list[Candidate]:
    """The frames collected, plus the last ``keep`` healthy snapshots before the collapse at
    ``step``, all of those tagged ``before_collapse`` (a frame already collected is tagged in
    place)."""
    if keep == 0:
        return frames
    for _, item in recent:
        if isinstance(item, int):
            meta = frames[item][2]
        else:
            frames.append(item)
            meta = item[2]
        meta.update(before_collapse=True, collapse_step=step, collapse_reason=reason)
    frames.sort(key=lambda c: c[2]["step"])
    return frames


def md_frames(
    atoms: Atoms,
    calc,
    temperature: float,
    steps: int,
    interval: int,
    timestep: float,
    seed: int,
    config_type: str = "md",
    ramp_to: float | None = None,
    *,
    friction: float = 0.002,
    check_every: int = 5,
    keep_before_collapse: int = 3,
    min_distance: float = _COLLAPSE_DISTANCE,
    blowup_factor: float = 10.0,
    generator: str = "md",
    pressure: float | None = None,
) -> list[Candidate]:
    """Langevin MD with ``calc``: a frame every ``interval`` steps, stopping safely if the
    structure falls apart.

    Velocities start from the Maxwell–Boltzmann distribution at ``temperature`` K; the
    thermostat's target is ``temperature``, or, with ``ramp_to``, goes linearly from
    ``temperature`` to ``ramp_to`` over the run. ``timestep`` is in fs and ``friction`` in
    1/fs (0.002/fs, a 500 fs time constant, is about the 0.02 ASE units used before). The
    centre of mass is not held. ``atoms`` is not changed.

    With ``pressure`` (GPa) and a 3D-periodic cell, an isotropic Berendsen barostat rescales
    the cell and positions at every check towards that pressure (time constant 200 fs for a
    solid of bulk modulus 100 GPa, at most 1% in length per check; the calculator must give
    stress); ``None`` keeps the volume, as does a cell that is not 3D-periodic. A cell that
    leaves 0.5–2 × its start volume has fallen apart.

    Every ``check_every`` steps the structure is checked; it has fallen apart when a position
    or momentum is not finite, the kinetic temperature exceeds ``blowup_factor`` × the highest
    target (at least 100 K), two atoms are closer than ``min_distance`` Å (minimum image), or
    the calculator raises ``ValueError``, ``FloatingPointError``, ``OverflowError`` or
    ``ZeroDivisionError`` (e.g. a student refusing overlapping atoms). The run then stops and
    returns the frames collected plus the last ``keep_before_collapse`` healthy snapshots
    (from the checks just before the collapse), each tagged ``meta["before_collapse"] = True``
    with ``collapse_step`` and ``collapse_reason``: a run that falls apart contributes the
    configurations that led there. No frame holds NaN or atoms closer than ``min_distance``.

    Returns ``(atoms, config_type, meta)`` triples (no calculator attached; momenta kept);
    meta: ``generator``, the target ``temperature`` and the ``kinetic_temperature`` (K),
    ``step``, ``time_fs``, ``phase``, the target ``pressure`` (GPa; ``None`` at constant
    volume) and, under the barostat, the ``volume`` (Å³), ``seed``. A calculator that cannot
    evaluate the start structure raises, as does a start structure with atoms closer than
    ``min_distance``.
    """
    end = temperature if ramp_to is None else ramp_to
    _check_md_args(steps, interval, timestep, (temperature, end), friction)
    phase = _Phase("md" if ramp_to is None else "ramp", float(temperature), float(end), steps)
    return _run_md(
        atoms,
        calc,
        [phase],
        interval,
        timestep,
        seed,
        config_type,
        generator,
        start_temperature=float(temperature),
        friction=friction,
        check_every=check_every,
        keep_before_collapse=keep_before_collapse,
        min_distance=min_distance,
        blowup_factor=blowup_factor,
        pressure=pressure,
        extra={},
    )


def _heating(temperature: float, steps: int, heat_fraction: float, max_heat_factor: float):
    if not (np.isfinite(max_heat_factor) and max_heat_factor >= 1.0):
        raise ValueError(f"max_heat_factor must be a number >= 1, got {max_heat_factor!r}")
    if not (0.0 <= heat_fraction < 1.0):
        raise ValueError(f"heat_fraction must be in [0, 1), got {heat_fraction!r}")
    n_heat = int(round(heat_fraction * steps))
    return _Phase("heat", float(temperature), float(max_heat_factor * temperature), n_heat, True)


def melt(
    atoms: Atoms,
    calc,
    temperature: float,
    steps: int = 1000,
    interval: int = 50,
    timestep: float = 2.0,
    seed: int = 0,
    *,
    heat_fraction: float = 0.5,
    max_heat_factor: float = 2.5,
    config_type: str = "melt",
    friction: float = 0.01,
    check_every: int = 5,
    keep_before_collapse: int = 3,
    min_distance: float = _COLLAPSE_DISTANCE,
    blowup_factor: float = 10.0,
    pressure: float | None = 0.0,
) -> list[Candidate]:
    """Frames of a liquid at ``temperature`` K: Langevin MD with ``calc``, ``steps`` in all,
    a frame every ``interval``.

    Heating (phase ``"heat"``): a small periodic cell of a perfect crystal superheats far past
    its melting point, the more so at constant volume (EMT Cu, 32 atoms at the crystal's
    volume, stays crystalline for 2 ps at 3000 K, 2.2 × copper's melting point), so holding
    ``temperature`` does not melt it. So the cell is under the barostat of :func:`md_frames`
    at ``pressure`` GPa (0 by default; ``None``: constant volume; a slab or cluster keeps its
    cell), velocities are drawn at twice ``temperature`` (in a harmonic crystal half the
    kinetic energy goes into the potential energy, so the lattice reaches the target at once),
    and the thermostat's target rises linearly from ``temperature`` to ``max_heat_factor ×
    temperature`` over at most ``heat_fraction × steps`` steps, until the structure has
    melted: half its atoms have moved more than 0.35 × the start's shortest interatomic
    distance from where they started (in the current cell, centre-of-mass drift removed). The
    remaining steps hold ``temperature`` (phase ``"melt"``). Frames come from both phases;
    ``meta["melted_step"]`` is the step at which melting was seen (``None``: not yet, or never
    — the heat ran out of steps, and the frames are of a hot crystal). The strong default
    friction (0.01/fs, a 100 fs time constant) makes the heating quick. Collapse
    handling and the rest of the meta as in :func:`md_frames` (``generator`` ``"melt"``)."""
    _check_md_args(steps, interval, timestep, (temperature,), friction)
    heat = _heating(temperature, steps, heat_fraction, max_heat_factor)
    hold = _Phase("melt", float(temperature), float(temperature), steps - heat.steps)
    return _run_md(
        atoms,
        calc,
        [heat, hold],
        interval,
        timestep,
        seed,
        config_type,
        "melt",
        start_temperature=2.0 * temperature,
        friction=friction,
        check_every=check_every,
        keep_before_collapse=keep_before_collapse,
        min_distance=min_distance,
        blowup_factor=blowup_factor,
        pressure=pressure,
        extra={"melt_temperature": float(temperature)},
    )


def melt_quench(
    atoms: Atoms,
    calc,
    t_melt: float,
    t_final: float,
    steps: int = 2000,
    interval: int = 50,
    timestep: float = 2.0,
    seed: int = 0,
    *,
    melt_fraction: float = 0.4,
    heat_fraction: float = 0.3,
    max_heat_factor: float = 2.0,
    config_type: str = "melt_quench",
    friction: float = 0.01,
    check_every: int = 5,
    keep_before_collapse: int = 3,
    min_distance: float = _COLLAPSE_DISTANCE,
    blowup_factor: float = 10.0,
    pressure: float | None = 0.0,
) -> list[Candidate]:
    """Melt, then cool linearly to an amorphous solid: Langevin MD with ``calc``, ``steps`` in
    all, a frame every ``interval`` along the way.

    The first ``melt_fraction`` of the steps melt the structure at ``t_melt`` K: heating as in
    :func:`melt` (phase ``"heat"``, at most ``heat_fraction`` of the steps, up to
    ``max_heat_factor × t_melt``), then holding ``t_melt`` (phase ``"melt"``). The rest cool
    the thermostat's target linearly from ``t_melt`` to ``t_final`` K (phase ``"quench"``), so
    the last frame's target is ``t_final``. The cooling rate, ``(t_melt − t_final) / ((1 −
    melt_fraction) · steps · timestep)`` K/fs, is far faster than any experiment's, which is
    what leaves a glass. The barostat (``pressure``), collapse handling and meta are those of
    :func:`melt` (``generator`` ``"melt_quench"``)."""
    _check_md_args(steps, interval, timestep, (t_melt, t_final), friction)
    if not (0.0 <= heat_fraction <= melt_fraction < 1.0):
        raise ValueError(
            "need 0 <= heat_fraction <= melt_fraction < 1, "
            f"got heat_fraction {heat_fraction!r} and melt_fraction {melt_fraction!r}"
        )
    heat = _heating(t_melt, steps, heat_fraction, max_heat_factor)
    n_melt = int(round(melt_fraction * steps))
    phases = [
        heat,
        _Phase("melt", float(t_melt), float(t_melt), n_melt - heat.steps),
        _Phase("quench", float(t_melt), float(t_final), steps - n_melt),
    ]
    return _run_md(
        atoms,
        calc,
        phases,
        interval,
        timestep,
        seed,
        config_type,
        "melt_quench",
        start_temperature=2.0 * t_melt,
        friction=friction,
        check_every=check_every,
        keep_before_collapse=keep_before_collapse,
        min_distance=min_distance,
        blowup_factor=blowup_factor,
        pressure=pressure,
        extra={"t_melt": float(t_melt), "t_final": float(t_final)},
    )
