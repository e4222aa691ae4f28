"""Every size, step count and tolerance of the physics checks (:class:`PhysicsSettings`), the
crystal properties they can compute (:data:`PROPERTIES`), and the validation helpers the other
modules of :mod:`mlff.distill.physics` share."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from ase import Atoms

__all__ = ["PROPERTIES", "PhysicsSettings"]

#: The crystal properties :func:`crystal_physics` can compute, in the order it computes them.
PROPERTIES = ("eos", "elastic", "phonons", "vacancy", "surface")
_OPTIMIZERS = ("BFGS", "LBFGS", "FIRE")


# ----------------------------------------------------------------------------------------------
# settings


def _fail(name: str, value: Any, accepted: str) -> None:
    raise ValueError(f"{name} = {value!r} is not accepted; {name} must be {accepted}")


def _int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        _fail(name, value, f"an integer >= {low}")


def _float(name: str, value: Any, low: float, high: float = math.inf, closed: bool = False) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (low <= value if closed else low < value) and value <= high
    if not ok:
        bracket = "[" if closed else "("
        _fail(name, value, f"a finite number in {bracket}{low}, {high}]")


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        _fail(name, value, "one of " + ", ".join(repr(c) for c in choices))


@dataclass(frozen=True)
class PhysicsSettings:
    """Every size, step count and tolerance of the physics checks (validated on creation).

    Crystal (:func:`crystal_physics`):
        properties: which of :data:`PROPERTIES` to compute.
        eos_points: volumes in the equation of state (>= 5; Birch–Murnaghan has 4 parameters).
        eos_volume_range: the volumes span V·(1 ± range) around the input volume.
        eos_recenter: how many times at most to sample again (eos_points calls each) when the
            fitted V0 falls outside the sampled volumes: around the fitted V0, or one window
            past the lowest point when the fit failed. Only the last window is fitted.
        elastic_strain: the ± strain δ of the central differences (engineering strain for the
            shears).
        elastic_patterns: "auto" (2 strain patterns for a cubic cell, verified, else 6),
            "cubic" or "full".
        phonon_method: "auto" (phonopy when importable), "phonopy" or "finite-difference"
            (Γ only, from the input cell).
        phonon_supercell_atoms: the phonopy supercell is the smallest diagonal repeat of the
            cell with at least this many atoms (sets the band structure's quality; Γ is exact
            at any size).
        phonon_displacement: finite displacement (Å).
        phonon_max_displacements: phonopy's displaced supercells above this count (a cell of
            low symmetry, such as a random alloy) skip the phonons rather than spend that many
            calculator calls on them; the result then says why.
        phonon_symprec: phonopy's symmetry tolerance (Å).
        band_points: q-points along the band path (no calculator calls).
        vacancy_atoms: the vacancy supercell has at least this many atoms before removal.
        vacancy_index: which atom of the supercell is removed.
        vacancy_relax: relax the vacancy's neighbours (cell fixed).
        surface_miller: Miller indices of the surface, relative to the input cell.
        surface_thickness: the slab is the fewest whole repeat units at least this thick (Å).
        surface_vacuum: vacuum on each side of the slab (Å), kept even when the normal is open.
        surface_periodic: make the slab periodic along the normal (across the vacuum).
        surface_relax: relax the slab (cell fixed); default unrelaxed.
        ion_fmax, ion_steps: force criterion (eV/Å) and step cap for the ionic relaxations of
            the bulk (EOS points, reference, strained cells) — tight, since stress depends on
            them to first order.
        defect_fmax, defect_steps: the same for the vacancy and surface relaxations.
        optimizer: "BFGS", "LBFGS" or "FIRE"; maxstep: its step cap (Å); optimizer_alpha:
            the (L)BFGS initial Hessian (eV/Å²; ASE's default is 70, 40 measured no worse on
            Cu, Si and C vacancies and 30 % fewer steps on Si).

    Liquid (:func:`liquid_physics`):
        liquid_steps, liquid_equilibration: production and equilibration MD steps.
        liquid_timestep_fs: timestep (fs). liquid_friction_per_fs: Langevin friction (1/fs).
        liquid_interval: steps between recorded frames.
        liquid_production: "langevin" or "nve" (velocity Verlet after Langevin equilibration).
        rdf_r_max, rdf_bins: range (Å) and bins of g(r).
        msd_max_lag: the MSD is computed for lags up to this fraction of the production run.
        msd_fit_window: (start, end) fractions of the largest lag between which MSD(t) is fitted
            by a line.
        pair_cutoff: distance (Å) within which the closest pair is searched.
        seed: seed of the velocities and of the Langevin noise.
    """

    properties: tuple[str, ...] = PROPERTIES
    eos_points: int = 7
    eos_volume_range: float = 0.06
    eos_recenter: int = 2
    elastic_strain: float = 0.005
    elastic_patterns: str = "auto"
    phonon_method: str = "auto"
    phonon_supercell_atoms: int = 64
    phonon_displacement: float = 0.01
    phonon_max_displacements: int = 24
    phonon_symprec: float = 1e-5
    band_points: int = 120
    vacancy_atoms: int = 64
    vacancy_index: int = 0
    vacancy_relax: bool = True
    surface_miller: tuple[int, int, int] = (1, 0, 0)
    surface_thickness: float = 8.0
    surface_vacuum: float = 10.0
    surface_periodic: bool = False
    surface_relax: bool = False
    ion_fmax: float = 1e-3
    ion_steps: int = 30
    defect_fmax: float = 0.02
    defect_steps: int = 20
    optimizer: str = "BFGS"
    maxstep: float = 0.1
    optimizer_alpha: float = 40.0
    liquid_steps: int = 500
    liquid_equilibration: int = 100
    liquid_timestep_fs: float = 2.0
    liquid_friction_per_fs: float = 0.01
    liquid_interval: int = 5
    liquid_production: str = "langevin"
    rdf_r_max: float = 6.0
    rdf_bins: int = 60
    msd_max_lag: float = 0.5
    msd_fit_window: tuple[float, float] = (0.2, 1.0)
    pair_cutoff: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("properties", "surface_miller", "msd_fit_window"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                _fail(name, value, "a sequence")
            object.__setattr__(self, name, tuple(value))
        for prop in self.properties:
            _choice("properties entry", prop, PROPERTIES)
        if len(set(self.properties)) != len(self.properties):
            _fail("properties", self.properties, "a sequence without repeats")
        miller = self.surface_miller
        if len(miller) != 3 or not all(
            isinstance(m, (int, np.integer)) and not isinstance(m, bool) for m in miller
        ):
            _fail("surface_miller", miller, "three integers")
        if not any(miller):
            _fail("surface_miller", miller, "three integers, not all zero")
        _int("eos_points", self.eos_points, 5)
        _int("eos_recenter", self.eos_recenter, 0)
        _float("eos_volume_range", self.eos_volume_range, 0.0, 0.3)
        _float("elastic_strain", self.elastic_strain, 0.0, 0.05)
        _choice("elastic_patterns", self.elastic_patterns, ("auto", "cubic", "full"))
        _choice("phonon_method", self.phonon_method, ("auto", "phonopy", "finite-difference"))
        _int("phonon_supercell_atoms", self.phonon_supercell_atoms, 1)
        _float("phonon_displacement", self.phonon_displacement, 0.0, 0.2)
        _int("phonon_max_displacements", self.phonon_max_displacements, 1)
        _float("phonon_symprec", self.phonon_symprec, 0.0, 0.1)
        _int("band_points", self.band_points, 2)
        _int("vacancy_atoms", self.vacancy_atoms, 2)
        _int("vacancy_index", self.vacancy_index, 0)
        _float("surface_thickness", self.surface_thickness, 0.0, 1e3)
        _float("surface_vacuum", self.surface_vacuum, 0.0, 1e3)
        _float("ion_fmax", self.ion_fmax, 0.0, 1.0)
        _int("ion_steps", self.ion_steps, 0)
        _float("defect_fmax", self.defect_fmax, 0.0, 10.0)
        _int("defect_steps", self.defect_steps, 0)
        _choice("optimizer", self.optimizer, _OPTIMIZERS)
        _float("maxstep", self.maxstep, 0.0, 1.0)
        _float("optimizer_alpha", self.optimizer_alpha, 0.0, 1e4)
        _int("liquid_steps", self.liquid_steps, 1)
        _int("liquid_equilibration", self.liquid_equilibration, 0)
        _float("liquid_timestep_fs", self.liquid_timestep_fs, 0.0, 50.0)
        _float("liquid_friction_per_fs", self.liquid_friction_per_fs, 0.0, 10.0)
        _int("liquid_interval", self.liquid_interval, 1)
        _choice("liquid_production", self.liquid_production, ("langevin", "nve"))
        _float("rdf_r_max", self.rdf_r_max, 0.0, 100.0)
        _int("rdf_bins", self.rdf_bins, 2)
        _float("msd_max_lag", self.msd_max_lag, 0.0, 1.0)
        window = self.msd_fit_window
        if not (
            len(window) == 2
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in window)
            and 0.0 <= window[0] < window[1] <= 1.0
        ):
            _fail("msd_fit_window", window, "(start, end) fractions with 0 <= start < end <= 1")
        _float("pair_cutoff", self.pair_cutoff, 0.0, 100.0)
        _int("seed", self.seed, 0)
        frames = self.liquid_steps // self.liquid_interval
        if frames < 10:
            raise ValueError(
                f"liquid_steps // liquid_interval = {self.liquid_steps} // "
                f"{self.liquid_interval} = {frames} frames; the MSD fit needs at least 10"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PhysicsSettings:
        """Settings from a dict (e.g. a TOML table); unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown physics setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------------------------
# input checks


def _check_structure(atoms: Atoms, what: str) -> None:
    if not isinstance(atoms, Atoms):
        raise TypeError(f"{what} needs an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError(f"{what} needs at least one atom, got an empty structure")
    if not atoms.pbc.all():
        raise ValueError(
            f"{what} needs a cell periodic in all three directions, got pbc {atoms.pbc.tolist()}"
        )
    if atoms.cell.volume <= 1e-6:
        raise ValueError(f"{what} needs a cell with positive volume, got {atoms.cell.volume} Å^3")


def _num(x: Any) -> float | None:
    """A plain float, or None for a missing or non-finite value."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
