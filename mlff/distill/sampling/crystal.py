"""Generators near the crystal: rattles, strains, point defects, slabs (surfaces) and
compressed or stretched cells, with the equation of state that turns pressures into
strains."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from ase import Atoms, units

from mlff.distill.sampling.common import (
    Candidate,
    _check_count,
    _check_nonnegative,
    _periodic_distances,
    _rng,
    _sampling_frame,
)

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
