"""Seed structures: the presets, their melting points, the default temperature range and
supercells."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, make_supercell

from mlff.distill.sampling.common import _COLLAPSE_DISTANCE, shortest_distance


def _quartz() -> Atoms:
    """α-quartz, P3₂21, 9 atoms: the published Wyckoff positions (Si x,0,0; O x,y,z) are
    shifted by 1/6 along c into the origin choice of ASE's table for group 154, where they
    give SiO2 with Si–O bonds of 1.605 and 1.614 Å."""
    from ase.spacegroup import crystal

    return crystal(
        ("Si", "O"),
        basis=[(0.4697, 0.0, 1 / 6), (0.4135, 0.2669, 0.1191 + 1 / 6)],
        spacegroup=154,
        cellpar=[4.916, 4.916, 5.405, 90, 90, 120],
    )


PRESETS: dict[str, Callable[[], Atoms]] = {
    "Si-diamond": lambda: bulk("Si", "diamond", a=5.43, cubic=True),
    "C-diamond": lambda: bulk("C", "diamond", a=3.567, cubic=True),
    "Ge-diamond": lambda: bulk("Ge", "diamond", a=5.658, cubic=True),
    "Cu-fcc": lambda: bulk("Cu", "fcc", a=3.61, cubic=True),
    "Al-fcc": lambda: bulk("Al", "fcc", a=4.05, cubic=True),
    "Ni-fcc": lambda: bulk("Ni", "fcc", a=3.52, cubic=True),
    "Fe-bcc": lambda: bulk("Fe", "bcc", a=2.87, cubic=True),
    "W-bcc": lambda: bulk("W", "bcc", a=3.165, cubic=True),
    "SiO2-quartz": _quartz,
}

#: Melting points (K, at ambient pressure) of the presets' materials. Carbon does not melt at
#: ambient pressure (it sublimes near 3900 K; the graphite–liquid–vapour triple point is near
#: 4600 K at ~0.01 GPa): 4000 K is an approximate stand-in. SiO2 is cristobalite's melting
#: point (quartz turns into other polymorphs before it melts).
MELTING_POINT_K: dict[str, float] = {
    "Si-diamond": 1687.0,
    "Ge-diamond": 1211.0,
    "C-diamond": 4000.0,
    "Cu-fcc": 1358.0,
    "Al-fcc": 933.0,
    "Ni-fcc": 1728.0,
    "Fe-bcc": 1811.0,
    "W-bcc": 3695.0,
    "SiO2-quartz": 1986.0,
}

#: The default top temperature is this factor times the highest melting point of the seeds: a
#: liquid well above melting, which is where a student is tested hardest (Si: ~2530 K).
TEMPERATURE_FACTOR = 1.5

#: The lowest temperature of the default range, K.
_LOWEST_TEMPERATURE = 300.0


def seed_structure(name_or_path: str) -> Atoms:
    """A preset (see ``PRESETS``) or any file ASE can read (the last frame)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]()
    if os.path.exists(name_or_path):
        from ase.io import read

        return read(name_or_path, index=-1)
    raise ValueError(
        f"unknown structure {name_or_path!r}: not a file and not a preset; "
        f"presets: {', '.join(PRESETS)}"
    )


def seed_structures(specs: Sequence[str]) -> list[tuple[str, Atoms]]:
    """``(name, atoms)`` for each ``--structure`` spec: a preset name or a file ASE reads.

    Each structure is checked (at least one atom, finite positions, a usable cell for its
    periodic directions, no two atoms closer than 0.5 Å); a bad spec raises ``ValueError``
    naming it. A preset keeps its name; a file is named by its file name (``my_slab.cif``), so
    it can never be taken for a preset. Repeated names get ``-2``, ``-3``, … appended. The
    structures carry no calculator.
    """
    from mlff.geometry import check_atoms

    if isinstance(specs, str):
        specs = [specs]
    specs = list(specs)
    if not specs:
        raise ValueError("no structures given; pass at least one --structure (a preset or file)")
    out: list[tuple[str, Atoms]] = []
    seen: dict[str, int] = {}
    for spec in specs:
        if not isinstance(spec, str) or not spec:
            raise ValueError(
                f"structure {spec!r}: expected a preset name ({', '.join(PRESETS)}) or a file path"
            )
        if spec not in PRESETS and not os.path.exists(spec):
            seed_structure(spec)  # raises, naming the spec and the presets
        try:
            atoms = seed_structure(spec)
        except Exception as err:  # ASE's readers raise many kinds of errors
            raise ValueError(f"structure {spec!r}: ASE could not read it ({err})") from err
        if not isinstance(atoms, Atoms):
            raise ValueError(f"structure {spec!r}: the file holds no structure ASE can use")
        try:
            check_atoms(atoms)
        except (TypeError, ValueError) as err:
            raise ValueError(f"structure {spec!r}: {err}") from err
        closest = shortest_distance(atoms, _COLLAPSE_DISTANCE)
        if closest < _COLLAPSE_DISTANCE:
            raise ValueError(
                f"structure {spec!r}: two atoms are {closest:.3f} Å apart; atoms must be at "
                f"least {_COLLAPSE_DISTANCE} Å apart (check the file's cell and units)"
            )
        atoms = atoms.copy()
        atoms.calc = None
        base = spec if spec in PRESETS else Path(spec).name
        count = seen.get(base, 0) + 1
        seen[base] = count
        name = base if count == 1 else f"{base}-{count}"
        while name in {n for n, _ in out}:  # e.g. a file literally named "x-2" given before
            count += 1
            seen[base] = count
            name = f"{base}-{count}"
        out.append((name, atoms))
    return out


def _preset_of(name: str) -> str:
    """The preset a seed name stands for: ``Si-diamond-2`` (a repeat, as
    :func:`seed_structures` names it) is ``Si-diamond``; other names are returned as they are."""
    base, _, count = name.rpartition("-")
    return base if base in PRESETS and count.isdigit() and int(count) >= 2 else name


def default_temperature_range(
    structures: Iterable[str | tuple[str, Atoms]],
    factor: float = TEMPERATURE_FACTOR,
) -> tuple[float, float]:
    """``(300.0, top)`` K with ``top = factor ×`` the highest melting point of the seeds
    (:data:`MELTING_POINT_K`), rounded to 10 K: Si-diamond gives (300, 2530).

    ``structures`` are preset names or the ``(name, atoms)`` pairs of :func:`seed_structures`.
    A seed that is not a preset (a file) has no known melting point: ``ValueError`` asks for
    ``--temperature LO:HI``.
    """
    names = [_preset_of(s if isinstance(s, str) else s[0]) for s in structures]
    if not names:
        raise ValueError("no structures given: cannot choose a temperature range")
    unknown = [n for n in names if n not in MELTING_POINT_K]
    if unknown:
        raise ValueError(
            f"no melting point is known for {', '.join(map(repr, unknown))} (not a preset); "
            "pass --temperature LO:HI (K) to state the temperature range"
        )
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    top = round(factor * max(MELTING_POINT_K[n] for n in names), -1)
    return _LOWEST_TEMPERATURE, float(max(top, _LOWEST_TEMPERATURE))


def supercell(atoms: Atoms, target_atoms: int) -> Atoms:
    """The smallest diagonal repeat of ``atoms`` with at least ``target_atoms`` atoms, keeping it
    as close to cubic as the cell allows."""
    if target_atoms < 1:
        raise ValueError(f"target_atoms must be >= 1, got {target_atoms}")
    lengths = atoms.cell.lengths()
    reps = [1, 1, 1]
    while len(atoms) * np.prod(reps) < target_atoms:
        axis = int(np.argmin([lengths[k] * reps[k] for k in range(3)]))
        reps[axis] += 1
    return make_supercell(atoms, np.diag(reps)) if reps != [1, 1, 1] else atoms.copy()
