"""Seed structures and candidate generators. Every generator takes a seed and is reproducible.

A generator yields ``(atoms, config_type, meta)`` triples; ``meta`` records how the structure
was made so the store can keep it next to the label. The molecular-dynamics generators
(:func:`md_frames`, :func:`melt`, :func:`melt_quench`) run with a calculator the caller gives
(the student during the active loop) and return lists of the same triples.

The generators cover the domain a user states (seed structures, a temperature range, a
pressure range):

- near a crystal: :func:`rattled`, :func:`strained`, :func:`vacancies`, :func:`divacancies`,
  :func:`interstitials`;
- surfaces: :func:`slabs` (non-periodic along the surface normal);
- pressure: :func:`compressed`, with :func:`volumetric_strain_for_pressure` to turn pressures
  into strains;
- crowding and short distances: :func:`clusters` (squeezed, non-periodic);
- liquids and glasses: :func:`packings` (random starts), :func:`melt`, :func:`melt_quench`,
  and :func:`md_frames` underneath.

Units are ASE's (Å, eV, K, fs for times given by the user, GPa for pressures).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, make_supercell

__all__ = [
    "PRESETS",
    "MELTING_POINT_K",
    "TEMPERATURE_FACTOR",
    "seed_structure",
    "seed_structures",
    "default_temperature_range",
    "supercell",
    "rattled",
    "strained",
    "vacancies",
    "divacancies",
    "interstitials",
    "slabs",
    "surfaces",
    "compressed",
    "clusters",
    "packings",
    "volumetric_strain_for_pressure",
    "estimate_bulk_modulus",
    "shortest_distance",
    "md_frames",
    "melt",
    "melt_quench",
]

Candidate = tuple[Atoms, str, dict]


def _quartz() -> Atoms:
    from ase.spacegroup import crystal

    return crystal(
        ("Si", "O"),
        basis=[(0.4697, 0.0, 0.0), (0.4135, 0.2669, 0.1191)],
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

#: Two atoms closer than this (Å) mean the structure has fallen apart (or overlaps).
_COLLAPSE_DISTANCE = 0.5


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


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_count(n) -> None:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n (the number of structures) must be an integer >= 0, got {n!r}")


def _check_nonnegative(**values) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def shortest_distance(atoms: Atoms, cutoff: float = 3.0) -> float:
    """The shortest distance (Å) between two atoms, images included along periodic directions
    (minimum image), or ``inf`` if no pair is closer than ``cutoff``; ``nan`` for non-finite
    positions."""
    from vesin import NeighborList

    if not np.isfinite(atoms.positions).all():
        return math.nan
    if len(atoms) < 2 and not atoms.pbc.any():
        return math.inf
    (d,) = NeighborList(cutoff=float(cutoff), full_list=False).compute(
        atoms.positions, atoms.cell.array, periodic=atoms.pbc, quantities="d"
    )
    return float(d.min()) if len(d) else math.inf


# ---------------------------------------------------------------- near the crystal


def rattled(
    atoms: Atoms, n: int, sigma: Sequence[float] = (0.02, 0.15), seed: int = 0
) -> Iterator[Candidate]:
    """Gaussian displacements with σ drawn uniformly from ``sigma`` (Å)."""
    rng = _rng(seed)
    for k in range(n):
        s = float(rng.uniform(*sigma))
        out = atoms.copy()
        out.positions += rng.normal(0.0, s, out.positions.shape)
        yield out, "rattle", {"generator": "rattle", "sigma": s, "seed": seed, "index": k}


def strained(
    atoms: Atoms, n: int, max_strain: float = 0.05, rattle: float = 0.03, seed: int = 0
) -> Iterator[Candidate]:
    """Random symmetric strains with components up to ``max_strain``, plus a small rattle."""
    rng = _rng(seed)
    for k in range(n):
        eps = rng.uniform(-max_strain, max_strain, (3, 3))
        eps = 0.5 * (eps + eps.T)
        out = atoms.copy()
        out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        yield (
            out,
            "strain",
            {"generator": "strain", "strain": eps.tolist(), "seed": seed, "index": k},
        )


def vacancies(atoms: Atoms, n: int, rattle: float = 0.05, seed: int = 0) -> Iterator[Candidate]:
    """One atom removed at random, then rattled."""
    if len(atoms) < 2:
        raise ValueError("a vacancy needs a structure with at least 2 atoms")
    rng = _rng(seed)
    for k in range(n):
        out = atoms.copy()
        site = int(rng.integers(len(out)))
        del out[site]
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        yield out, "vacancy", {"generator": "vacancy", "site": site, "seed": seed, "index": k}


def divacancies(
    atoms: Atoms, n: int, seed: int = 0, rattle: float = 0.05, shell_tolerance: float = 0.1
) -> Iterator[Candidate]:
    """Two neighbouring atoms removed, then rattled (σ = ``rattle`` Å).

    An atom *i* is drawn at random, and its partner *j* at random among *i*'s nearest
    neighbours: the atoms within ``(1 + shell_tolerance)`` × *i*'s nearest distance (minimum
    image), so a crystal's whole first shell is eligible. ``meta["sites"]`` are the indices
    of both in ``atoms`` and ``meta["distance"]`` their distance (Å)."""
    _check_count(n)
    _check_nonnegative(rattle=rattle, shell_tolerance=shell_tolerance)
    if len(atoms) < 3:
        raise ValueError(
            f"a divacancy needs a structure with at least 3 atoms, got {len(atoms)}; "
            "repeat the cell (supercell) first"
        )
    rng = _rng(seed)
    everyone = np.arange(len(atoms))
    for k in range(n):
        i = int(rng.integers(len(atoms)))
        d = atoms.get_distances(i, everyone, mic=True)
        d[i] = np.inf
        shell = np.flatnonzero(d <= d.min() * (1.0 + shell_tolerance))
        j = int(shell[rng.integers(len(shell))])
        out = atoms.copy()
        del out[[i, j]]
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        meta = {
            "generator": "divacancy",
            "sites": [i, j],
            "distance": float(d[j]),
            "rattle": rattle,
            "seed": seed,
            "index": k,
        }
        yield out, "divacancy", meta


def _sampling_frame(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A basis (3, 3) whose periodic rows are the cell's and whose open rows are orthonormal to
    them, and the atoms' lowest and highest coordinates (3,) along it; random points are drawn
    uniformly in [0, 1) along periodic rows and between those bounds along open ones."""
    from mlff.geometry import search_cell

    basis = search_cell(atoms.cell.array, atoms.pbc)
    coords = atoms.positions @ np.linalg.inv(basis)  # (n_atoms, 3)
    lo = np.where(atoms.pbc, 0.0, coords.min(0))
    hi = np.where(atoms.pbc, 1.0, coords.max(0))
    return basis, lo, hi


def _nearest(points: np.ndarray, atoms: Atoms) -> np.ndarray:
    """(n_points,) distance (Å, minimum image) from each point to its nearest atom."""
    from ase.geometry import get_distances

    if atoms.pbc.all():
        inverse = np.linalg.inv(atoms.cell.array)
        scaled = atoms.positions @ inverse
        return _periodic_distances(points @ inverse, scaled, atoms.cell.array).min(axis=1)
    _, d = get_distances(points, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return d.min(axis=1)


def interstitials(
    atoms: Atoms,
    n: int,
    seed: int = 0,
    rattle: float = 0.05,
    trials: int = 400,
    species: str | None = None,
) -> Iterator[Candidate]:
    """One extra atom in the largest void found, then everything rattled (σ = ``rattle`` Å).

    The void search is a random one, in two stages: ``trials`` points uniform in the cell (in
    the atoms' extent along open directions), then ``trials // 4`` points scattered (σ =
    0.25 Å) around the best of them; the site is the point farthest from its nearest atom
    (minimum image). In fcc Cu it lands within a few hundredths of an Å of the octahedral
    site's clearance (a/2). The species is drawn uniformly from the structure's elements,
    unless ``species`` names one. ``meta["clearance"]`` is the site's distance to the nearest
    atom before the rattle (Å)."""
    _check_count(n)
    _check_nonnegative(rattle=rattle)
    if not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    elements = sorted(set(atoms.get_chemical_symbols()))
    if species is not None and species not in elements:
        from ase.data import chemical_symbols

        if species not in chemical_symbols[1:]:
            raise ValueError(f"species {species!r} is not a chemical symbol")
    rng = _rng(seed)
    basis, lo, hi = _sampling_frame(atoms)
    for k in range(n):
        points = (lo + (hi - lo) * rng.random((trials, 3))) @ basis  # (trials, 3)
        best = points[np.argmax(_nearest(points, atoms))]
        local = np.vstack([best, best + rng.normal(0.0, 0.25, (max(1, trials // 4), 3))])
        clearance = _nearest(local, atoms)
        site = local[np.argmax(clearance)]
        symbol = species or elements[int(rng.integers(len(elements)))]
        out = atoms.copy()
        out.append(symbol)
        out.positions[-1] = site
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        meta = {
            "generator": "interstitial",
            "species": symbol,
            "site": site.tolist(),
            "clearance": float(clearance.max()),
            "rattle": rattle,
            "seed": seed,
            "index": k,
        }
        yield out, "interstitial", meta


# ---------------------------------------------------------------- surfaces


def slabs(
    atoms: Atoms,
    n: int,
    vacuum: float = 8.0,
    rattle: float = 0.05,
    seed: int = 0,
    axes: Sequence[int] = (0, 1, 2),
) -> Iterator[Candidate]:
    """Slabs with two free surfaces: ``atoms`` (3D-periodic) cut open along a lattice direction.

    For each slab a cell vector ``a`` is drawn from ``axes``; the surfaces are the lattice
    planes spanned by the other two vectors. The cut falls at a random height (the atoms are
    shifted by a random fraction of ``a`` and wrapped), so different terminations are
    sampled. ``a`` is lengthened so that ``vacuum`` Å of empty space lies between the slab and
    its image along the surface normal, the slab is centred, **pbc is False along ``a``** (no
    interaction through the vacuum, and no stress label: stress needs a 3D-periodic cell), and
    the atoms are rattled (σ = ``rattle`` Å). The vacuum keeps the slab a slab for a teacher
    that ignores ``pbc``."""
    _check_count(n)
    _check_nonnegative(vacuum=vacuum, rattle=rattle)
    if not atoms.pbc.all():
        raise ValueError(
            f"slabs needs a 3D-periodic structure to cut; this one has pbc {atoms.pbc.tolist()}"
        )
    axes = [int(a) for a in axes]
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"axes must be a non-empty selection of 0, 1, 2; got {axes}")
    rng = _rng(seed)
    cell = atoms.cell.array
    for k in range(n):
        axis = axes[int(rng.integers(len(axes)))]
        offset = float(rng.random())
        out = atoms.copy()
        scaled = out.get_scaled_positions(wrap=False)
        scaled[:, axis] += offset
        out.set_scaled_positions(scaled)
        out.wrap()
        normal = np.cross(cell[axis - 2], cell[axis - 1])
        normal /= np.linalg.norm(normal)
        width = abs(float(cell[axis] @ normal))  # the slab's thickness along the normal
        new_cell = cell.copy()
        new_cell[axis] = cell[axis] * (1.0 + vacuum / width)
        out.set_cell(new_cell, scale_atoms=False)
        out.positions += 0.5 * (new_cell[axis] - cell[axis])  # centre the slab
        pbc = np.ones(3, dtype=bool)
        pbc[axis] = False
        out.pbc = pbc
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        meta = {
            "generator": "slab",
            "axis": axis,
            "offset": offset,
            "vacuum": vacuum,
            "rattle": rattle,
            "seed": seed,
            "index": k,
        }
        yield out, "slab", meta


#: The former name of :func:`slabs` (which used to keep the slab 3D-periodic).
surfaces = slabs


# ---------------------------------------------------------------- pressure


def compressed(
    atoms: Atoms,
    n: int,
    seed: int = 0,
    max_compression: float = 0.08,
    max_tension: float = 0.04,
    shear: float = 0.02,
    rattle: float = 0.03,
) -> Iterator[Candidate]:
    """Isotropic volume changes across compression and tension, with small shears and a rattle.

    Strains are *linear* (fractional change of every length): the linear strain ``s`` runs
    over ``[-max_compression, +max_tension]``, so the volume ratio ``V/V0 = (1 + s)³`` runs
    over ``[(1 - max_compression)³, (1 + max_tension)³]`` (0.08 compression: V/V0 = 0.779).
    The ``n`` strains are stratified (one drawn uniformly in each of ``n`` equal bins, in a
    random order), so even a few structures span the range. Each cell also gets a random
    symmetric shear with off-diagonal components up to ``shear``, normalised to keep the
    volume, and the atoms a rattle (σ = ``rattle`` Å). Positions follow the cell (any pbc).
    Turn a pressure range into these bounds with :func:`volumetric_strain_for_pressure`."""
    _check_count(n)
    _check_nonnegative(
        max_compression=max_compression, max_tension=max_tension, shear=shear, rattle=rattle
    )
    if max_compression >= 1.0:
        raise ValueError(
            f"max_compression must be below 1 (a linear strain), got {max_compression}"
        )
    if shear >= 0.5:
        raise ValueError(f"shear must be below 0.5, got {shear}")
    rng = _rng(seed)
    lo, hi = -float(max_compression), float(max_tension)
    bins = rng.permutation(n)
    offsets = rng.random(n)
    for k in range(n):
        s = lo + (hi - lo) * (bins[k] + offsets[k]) / max(n, 1)
        e = np.triu(rng.uniform(-shear, shear, (3, 3)), 1)
        e = e + e.T
        shape = (np.eye(3) + e) / np.cbrt(np.linalg.det(np.eye(3) + e))  # det = 1
        transform = (1.0 + s) * shape  # (3, 3), acts on row vectors
        out = atoms.copy()
        out.set_cell(atoms.cell.array @ transform, scale_atoms=False)
        out.positions = atoms.positions @ transform + rng.normal(0.0, rattle, (len(atoms), 3))
        meta = {
            "generator": "compressed",
            "linear_strain": float(s),
            "volume_ratio": float((1.0 + s) ** 3),
            "shear": e.tolist(),
            "rattle": rattle,
            "seed": seed,
            "index": k,
        }
        yield out, "compressed", meta


def _birch_murnaghan_pressure(ratio: float, b0: float, b0_prime: float) -> float:
    """Third-order Birch–Murnaghan pressure (units of ``b0``) at volume ratio V/V0."""
    x = ratio ** (-2.0 / 3.0)
    return 1.5 * b0 * (x**3.5 - x**2.5) * (1.0 + 0.75 * (b0_prime - 4.0) * (x - 1.0))


def volumetric_strain_for_pressure(
    pressure_gpa: float, bulk_modulus_gpa: float, bulk_modulus_derivative: float = 4.0
) -> float:
    """The *linear* strain ``s`` (``V/V0 = (1 + s)³``; negative for compression) at which the
    third-order Birch–Murnaghan equation of state with bulk modulus ``bulk_modulus_gpa`` and
    pressure derivative ``bulk_modulus_derivative`` (B0′, 4 for most solids) gives
    ``pressure_gpa``. Negative pressures (tension) are accepted up to the equation's spinodal,
    past which no volume has that pressure (``ValueError`` names the largest tension). For
    small pressures ``s ≈ -p / (3 B0)``.

    Feed :func:`compressed`: ``max_compression = -volumetric_strain_for_pressure(p_hi, B)``.
    """
    from scipy.optimize import brentq

    p, b0, b0p = float(pressure_gpa), float(bulk_modulus_gpa), float(bulk_modulus_derivative)
    if not (np.isfinite(b0) and b0 > 0):
        raise ValueError(f"bulk_modulus_gpa must be a positive number, got {bulk_modulus_gpa!r}")
    if not (np.isfinite(b0p) and 1.0 <= b0p <= 12.0):
        raise ValueError(
            f"bulk_modulus_derivative must be between 1 and 12, got {bulk_modulus_derivative!r}"
        )
    if not np.isfinite(p):
        raise ValueError(f"pressure_gpa must be a finite number, got {pressure_gpa!r}")
    if p == 0.0:
        return 0.0

    def residual(r: float) -> float:
        return _birch_murnaghan_pressure(r, b0, b0p) - p

    # Walk away from V0 in small steps until the pressure is passed (bisect there), or until
    # the pressure turns back (the equation's extremum) or the walk leaves its range.
    step, previous, ratio = (-0.002 if p > 0 else 0.002), 1.0, 1.0
    last = 0.0
    while True:
        ratio = previous + step
        value = _birch_murnaghan_pressure(ratio, b0, b0p)
        if (p > 0 and value >= p) or (p < 0 and value <= p):
            found = brentq(residual, previous, ratio, xtol=1e-14)
            return float(np.cbrt(found) - 1.0)
        turned = value < last if p > 0 else value > last
        if turned or ratio < 0.3 or ratio > 3.0:
            kind = "compression" if p > 0 else "tension"
            raise ValueError(
                f"no volume has pressure {p} GPa on the Birch–Murnaghan equation with "
                f"B0 = {b0} GPa, B0' = {b0p}: the largest {kind} it reaches is about "
                f"{abs(last):.3g} GPa"
            )
        previous, last = ratio, value


def estimate_bulk_modulus(atoms: Atoms, calc, max_strain: float = 0.02, points: int = 7) -> float:
    """The bulk modulus (GPa) of ``atoms`` (3D-periodic) under ``calc``: energies at ``points``
    isotropic linear strains in ``±max_strain``, fitted by ASE's Birch–Murnaghan equation of
    state. ``points`` calculator calls; the structure is not relaxed, so give it near its
    equilibrium volume."""
    from ase.eos import EquationOfState

    if not atoms.pbc.all():
        raise ValueError(f"a bulk modulus needs a 3D-periodic structure, got pbc {atoms.pbc}")
    if points < 5:
        raise ValueError(f"points must be >= 5 for an equation-of-state fit, got {points}")
    volumes, energies = [], []
    for s in np.linspace(-max_strain, max_strain, points):
        probe = atoms.copy()
        probe.set_cell(atoms.cell.array * (1.0 + s), scale_atoms=True)
        probe.calc = calc
        volumes.append(probe.get_volume())
        energies.append(probe.get_potential_energy())
    _, _, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    return float(b / units.GPa)


# ---------------------------------------------------------------- crowding


def clusters(
    atoms: Atoms,
    n: int,
    seed: int = 0,
    size: int = 32,
    squeeze: Sequence[float] = (0.7, 1.0),
    vacuum: float = 6.0,
    rattle: float = 0.03,
) -> Iterator[Candidate]:
    """Compact clusters cut from ``atoms``, squeezed: crowding and short distances.

    A point is drawn uniformly in the cell; the ``size`` atoms nearest to it (periodic images
    included) form the cluster, which is scaled about its centroid by a factor drawn uniformly
    from ``squeeze`` (0.7: every distance, the nearest-neighbour ones included, at 0.7 of the
    crystal's) and rattled (σ = ``rattle`` Å). The cluster is non-periodic (pbc False), in an
    orthorhombic box with ``vacuum`` Å around it. ``meta["squeeze"]`` is the factor."""
    _check_count(n)
    _check_nonnegative(vacuum=vacuum, rattle=rattle)
    low, high = (float(v) for v in squeeze)
    if not (0.0 < low <= high):
        raise ValueError(f"squeeze must be (low, high) with 0 < low <= high, got {squeeze!r}")
    if not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    if not atoms.pbc.any() and size > len(atoms):
        raise ValueError(
            f"a non-periodic structure of {len(atoms)} atoms has no {size}-atom cluster"
        )
    pool = _images(atoms, size)  # (n_images * n_atoms,) Atoms without pbc
    rng = _rng(seed)
    basis, lo, hi = _sampling_frame(atoms)
    for k in range(n):
        centre = (lo + (hi - lo) * rng.random(3)) @ basis
        chosen = np.argsort(np.linalg.norm(pool.positions - centre, axis=1), kind="stable")[:size]
        out = pool[np.sort(chosen)]
        factor = float(rng.uniform(low, high))
        centroid = out.positions.mean(0)
        out.positions = centroid + factor * (out.positions - centroid)
        out.positions += rng.normal(0.0, rattle, out.positions.shape)
        out.pbc = False
        extent = out.positions.max(0) - out.positions.min(0)
        out.set_cell(np.diag(extent + 2.0 * vacuum))
        out.positions += vacuum - out.positions.min(0)
        meta = {
            "generator": "cluster",
            "size": int(size),
            "squeeze": factor,
            "centre": centre.tolist(),
            "rattle": rattle,
            "seed": seed,
            "index": k,
        }
        yield out, "cluster", meta


def _images(atoms: Atoms, size: int) -> Atoms:
    """``atoms`` and enough periodic images around it that the ``size`` atoms nearest to any
    point of the cell are among them (non-periodic, no cell)."""
    if not atoms.pbc.any():
        out = atoms.copy()
        out.pbc = False
        return out
    from mlff.geometry import periodic_widths

    volume_per_atom = abs(np.linalg.det(atoms.cell.array)) / len(atoms) if atoms.pbc.all() else 0
    if volume_per_atom <= 0:  # mixed pbc: the cell's volume means nothing; bound by the extent
        volume_per_atom = max(np.ptp(atoms.positions, axis=0).prod(), 1.0) / len(atoms)
    radius = 1.5 * (3.0 * size * volume_per_atom / (4.0 * np.pi)) ** (1.0 / 3.0)
    widths = periodic_widths(atoms.cell.array, atoms.pbc)
    reach = [int(np.ceil(radius / widths[a])) + 1 if atoms.pbc[a] else 0 for a in range(3)]
    base = atoms.copy()
    base.wrap()
    shifts = np.array(
        [
            (i, j, k)
            for i in range(-reach[0], reach[0] + 1)
            for j in range(-reach[1], reach[1] + 1)
            for k in range(-reach[2], reach[2] + 1)
        ]
    )  # (n_images, 3)
    offsets = shifts @ atoms.cell.array  # (n_images, 3)
    positions = (base.positions[None, :, :] + offsets[:, None, :]).reshape(-1, 3)
    numbers = np.tile(base.numbers, len(shifts))
    return Atoms(numbers=numbers, positions=positions, pbc=False)


def _contact_distances(atoms: Atoms, cutoff: float = 6.0) -> dict[tuple[int, int], float]:
    """For every pair of atomic numbers in ``atoms``, the shortest distance (Å, minimum image)
    between two such atoms, or the sum of their covalent radii if none are within ``cutoff``."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff, self_interaction=False)
    species = sorted(set(atoms.numbers.tolist()))
    out = {}
    for a in species:
        for b in species:
            mask = (atoms.numbers[i] == a) & (atoms.numbers[j] == b)
            out[a, b] = (
                float(d[mask].min()) if mask.any() else covalent_radii[a] + covalent_radii[b]
            )
    return out


def _periodic_distances(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) minimum-image distances (Å) between fractional coordinates ``a`` and
    ``b`` of a 3D-periodic ``cell``: the wrapped difference, and for a cell with oblique angles
    the 27 images around it."""
    diff = a[:, None, :] - b[None, :, :]  # (n_a, n_b, 3)
    diff -= np.round(diff)
    cart = diff @ cell  # (n_a, n_b, 3)
    square = np.einsum("abk,abk->ab", cart, cart)
    gram = cell @ cell.T
    if np.allclose(gram, np.diag(np.diag(gram)), atol=1e-9 * np.trace(gram)):  # orthorhombic
        return np.sqrt(square)
    shifts = np.array(np.meshgrid(*[(-1, 0, 1)] * 3)).reshape(3, -1).T @ cell  # (27, 3)
    # |r + s|² = |r|² + min over images s of (2 r·s + |s|²)
    extra = (2.0 * cart @ shifts.T + np.einsum("sk,sk->s", shifts, shifts)).min(axis=-1)
    return np.sqrt(np.maximum(square + extra, 0.0))


def packings(
    atoms: Atoms,
    n: int,
    seed: int = 0,
    min_distance_factor: float = 0.75,
    trials: int = 200,
) -> Iterator[Candidate]:
    """Random packings: the atoms of ``atoms`` (3D-periodic) placed at random in its cell, a
    start for liquids that no lattice remembers (a small perfect crystal superheats far past
    its melting point instead of melting).

    The atoms are placed one by one in a random order; each at the best of ``trials`` random
    points, the one farthest, relative to the contact distance, from the atoms already placed
    (minimum image). The contact distance of a species pair is ``min_distance_factor`` × its
    shortest distance in ``atoms`` (the sum of covalent radii for a pair that has none within
    6 Å). Same cell, composition and density as ``atoms``. ``meta["closest_ratio"]`` is the
    smallest distance / contact distance reached (≥ 1 when every contact was kept)."""
    _check_count(n)
    if not atoms.pbc.all():
        raise ValueError(
            f"packings needs a 3D-periodic structure to fill; this one has pbc {atoms.pbc.tolist()}"
        )
    if not (np.isfinite(min_distance_factor) and 0 < min_distance_factor <= 1.5):
        raise ValueError(f"min_distance_factor must be in (0, 1.5], got {min_distance_factor!r}")
    if not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    contact = _contact_distances(atoms)
    species = sorted({a for a, _ in contact})
    table = np.array([[contact[a, b] for b in species] for a in species]) * min_distance_factor
    index = np.searchsorted(species, atoms.numbers)  # (n_atoms,) row of each atom in ``table``
    cell = atoms.cell.array
    rng = _rng(seed)
    for k in range(n):
        order = rng.permutation(len(atoms))
        scaled = np.zeros((len(atoms), 3))
        worst = np.inf
        for m, atom in enumerate(order):
            points = rng.random((trials, 3))  # (trials, 3) fractional
            if m:
                placed = order[:m]
                d = _periodic_distances(points, scaled[placed], cell)  # (trials, m)
                ratio = (d / table[index[atom], index[placed]]).min(axis=1)  # (trials,)
                best = int(np.argmax(ratio))
                worst = min(worst, float(ratio[best]))
            else:
                best = 0
            scaled[atom] = points[best]
        out = atoms.copy()
        out.positions = scaled @ cell
        meta = {
            "generator": "packing",
            "min_distance_factor": min_distance_factor,
            "closest_ratio": worst,
            "seed": seed,
            "index": k,
        }
        yield out, "packing", meta


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
