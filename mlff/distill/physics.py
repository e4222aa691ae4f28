"""Teacher-vs-student physics: the material properties a user judges a potential by.

Every function takes any ASE calculator and a structure, and returns a JSON-serialisable dict
(plain floats, lists, bools, strings; ``None`` where a value could not be computed). Each result
says how many calculator evaluations it took (``calls``) and how many atoms those evaluations
held in total (``atoms_evaluated``), since a teacher costs per call and per atom.

Units: lengths Å, energies eV, stress and moduli GPa, frequencies THz, temperatures K, MD
timesteps fs (inputs), times in results ps, surface energies eV/Å² and J/m², diffusion Å²/ps
and cm²/s.

Entry points::

    teacher = crystal_physics(teacher_calc, atoms, settings)       # eos elastic phonons ...
    teacher |= liquid_physics(teacher_calc, melt, 2000.0, settings)
    student = ...same with the student...
    table = compare_physics(teacher, student)
    print(format_physics_table(table))

The individual properties (:func:`equation_of_state`, :func:`elastic_constants`,
:func:`phonons`, :func:`vacancy_formation`, :func:`surface_energy`, :func:`md_survival`) are
public too. docs/physics.md describes each method, its cost and its limitations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator, Calculator, all_changes

from mlff.distill.sampling import supercell

__all__ = [
    "PROPERTIES",
    "DEFAULT_TOLERANCES",
    "PhysicsSettings",
    "CountingCalculator",
    "crystal_physics",
    "equation_of_state",
    "elastic_constants",
    "phonons",
    "vacancy_formation",
    "surface_energy",
    "liquid_physics",
    "md_survival",
    "radial_distribution",
    "mean_squared_displacement",
    "rdf_l1",
    "compare_physics",
    "format_physics_table",
    "total_calls",
]

#: The crystal properties :func:`crystal_physics` can compute, in the order it computes them.
PROPERTIES = ("eos", "elastic", "phonons", "vacancy", "surface")

#: eV/Å² → J/m².
EV_A2_TO_J_M2 = units._e * 1e20
#: sqrt(eV / (Å² amu)) → THz (ordinary frequency, not angular).
_THZ = math.sqrt(units._e / units._amu) * 1e10 / (2 * math.pi) / 1e12
#: Voigt order [xx, yy, zz, yz, xz, xy] as index pairs.
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
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
# counting calculator


class CountingCalculator(Calculator):
    """An ASE calculator that forwards every evaluation to ``calc`` and counts them.

    Attributes:
        calc: the wrapped calculator.
        calls: evaluations forwarded to ``calc`` (cache hits are not evaluations).
        atoms_evaluated: total number of atoms in those evaluations.
        always: properties requested together with whatever was asked (default energy and
            forces, so an optimizer's forces-then-energy requests cost one call).

    A ``CountingCalculator`` passed to the functions of this module is used as it is, so one
    instance can count a whole session.
    """

    def __init__(self, calc: BaseCalculator, always: Sequence[str] = ("energy", "forces")):
        if not isinstance(calc, BaseCalculator):
            raise TypeError(f"expected an ASE calculator, got {type(calc).__name__}")
        super().__init__()
        self.calc = calc
        implemented = list(getattr(calc, "implemented_properties", ()) or ())
        self.implemented_properties = implemented or ["energy", "free_energy", "forces", "stress"]
        self.always = tuple(always)
        self.calls = 0
        self.atoms_evaluated = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        extra = [p for p in self.always if p in self.implemented_properties]
        wanted = list(dict.fromkeys([*properties, *extra]))
        self.calls += 1
        self.atoms_evaluated += len(self.atoms)
        # The ASE idiom for forwarding (see ase.calculators.mixing): the inner calculator's own
        # cache is bypassed because ours just missed.
        self.calc.calculate(self.atoms.copy(), wanted, all_changes)
        self.results = {
            key: value.copy() if isinstance(value, np.ndarray) else value
            for key, value in self.calc.results.items()
        }

    @contextmanager
    def requesting(self, *names: str) -> Iterator[CountingCalculator]:
        """Within the block, also ask for ``names`` (e.g. "stress") on every evaluation."""
        before = self.always
        self.always = tuple(dict.fromkeys([*before, *names]))
        try:
            yield self
        finally:
            self.always = before

    def tally(self) -> tuple[int, int]:
        """(calls, atoms_evaluated) so far."""
        return self.calls, self.atoms_evaluated


def _counting(calc: BaseCalculator) -> CountingCalculator:
    return calc if isinstance(calc, CountingCalculator) else CountingCalculator(calc)


def _cost(counter: CountingCalculator, start: tuple[int, int]) -> dict:
    calls, atoms = counter.tally()
    return {"calls": calls - start[0], "atoms_evaluated": atoms - start[1]}


def total_calls(result: Mapping[str, Any]) -> int:
    """Calculator calls summed over the sections of a :func:`crystal_physics` /
    :func:`liquid_physics` result (or a merge of both)."""
    return sum(
        int(section.get("calls", 0)) for section in result.values() if isinstance(section, Mapping)
    )


# ----------------------------------------------------------------------------------------------
# small helpers


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


def _fmax(forces: np.ndarray) -> float:
    return float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1)).max()) if len(forces) else 0.0


def _attach(atoms: Atoms, counter: CountingCalculator) -> Atoms:
    out = atoms.copy()
    out.calc = counter
    return out


def _relax(atoms: Atoms, fmax: float, steps: int, settings: PhysicsSettings) -> dict:
    """Relax positions at fixed cell unless the forces are already below ``fmax`` (eV/Å)."""
    start = _fmax(atoms.get_forces())
    if start <= fmax or steps == 0:
        return {"relaxed": False, "converged": start <= fmax, "steps": 0, "max_force_eV_A": start}
    import ase.optimize

    optimizer = getattr(ase.optimize, settings.optimizer)
    extra = {"alpha": settings.optimizer_alpha} if settings.optimizer != "FIRE" else {}
    opt = optimizer(atoms, logfile=None, maxstep=settings.maxstep, **extra)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return {
        "relaxed": True,
        "converged": converged,
        "steps": int(opt.nsteps),
        "max_force_eV_A": _fmax(atoms.get_forces()),
    }


def _scaled(atoms: Atoms, scale: float) -> Atoms:
    out = atoms.copy()
    out.set_cell(atoms.cell.array * scale, scale_atoms=True)
    return out


# ----------------------------------------------------------------------------------------------
# equation of state


def _birch_murnaghan(volumes: np.ndarray, energies: np.ndarray) -> dict:
    """Fit E(V); returns V0 (Å³), E0 (eV), B0 (GPa) and B0' or the reason it failed."""
    from ase.eos import EquationOfState

    if not (np.isfinite(volumes).all() and np.isfinite(energies).all()):
        return {"error": "non-finite energies"}
    try:
        eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
        v0, e0, b0 = eos.fit(warn=False)
        bp = eos.eos_parameters[2]
    except (RuntimeError, ValueError, TypeError, np.linalg.LinAlgError) as err:
        return {"error": f"Birch-Murnaghan fit failed: {err}"}
    if not (np.isfinite([v0, e0, b0, bp]).all() and v0 > 0 and b0 > 0):
        return {"error": f"Birch-Murnaghan fit gave V0 = {v0}, B0 = {b0}"}
    return {"V0": float(v0), "E0": float(e0), "B0": float(b0 / units.GPa), "Bp": float(bp)}


def _eos_points(
    counter: CountingCalculator, atoms: Atoms, volumes: np.ndarray, settings: PhysicsSettings
) -> tuple[list[float], list[float], bool]:
    v_in = atoms.get_volume()
    energies, relaxed = [], False
    for volume in volumes:
        probe = _attach(_scaled(atoms, (volume / v_in) ** (1 / 3)), counter)
        relaxed |= _relax(probe, settings.ion_fmax, settings.ion_steps, settings)["relaxed"]
        energies.append(float(probe.get_potential_energy()))
    return [float(v) for v in volumes], energies, relaxed


def _next_eos_centre(
    fit: dict, volumes: list[float], energies: list[float], v_in: float, spread: float
) -> float | None:
    """Where to sample next, or None when the fitted V0 lies within the sampled ``volumes``:
    at the fitted V0 if it is within a factor 2 of the input volume, else one window past the
    lowest point (the minimum is beyond an edge and the fit failed or ran off)."""
    if "V0" in fit and min(volumes) <= fit["V0"] <= max(volumes):
        return None
    if "V0" in fit and 0.5 < fit["V0"] / v_in < 2.0:
        return fit["V0"]
    lowest = int(np.argmin(energies))
    step = -spread if lowest == 0 else spread if lowest == len(volumes) - 1 else 0.0
    return volumes[lowest] * (1 + step)


def equation_of_state(
    calc: BaseCalculator, atoms: Atoms, settings: PhysicsSettings | None = None
) -> dict:
    """Energies at isotropically scaled volumes and their Birch–Murnaghan fit.

    Returns: volumes_A3, energies_eV (every point sampled, whole cell, ions relaxed where
    forces did not vanish; the fit uses the last window of ``eos_points``), n_atoms, V0_A3,
    E0_eV (whole cell), B0_GPa, B0_prime, scale0 = (V0/V_input)^(1/3), a0_A (|a| of the input
    cell scaled to V0), recentred, V0_in_range (False: the fit extrapolates), ions_relaxed,
    calls; on a failed fit the fitted values are None and ``error`` says why.
    """
    settings = settings or PhysicsSettings()
    _check_structure(atoms, "equation_of_state")
    counter = _counting(calc)
    start = counter.tally()
    v_in = atoms.get_volume()
    spread = np.linspace(-1.0, 1.0, settings.eos_points) * settings.eos_volume_range
    window = v_in * (1 + spread)
    volumes, energies, relaxed = [], [], False
    for attempt in range(settings.eos_recenter + 1):
        v, e, r = _eos_points(counter, atoms, window, settings)
        volumes, energies, relaxed = volumes + v, energies + e, relaxed or r
        fit = _birch_murnaghan(np.array(v), np.array(e))
        centre = _next_eos_centre(fit, v, e, v_in, settings.eos_volume_range)
        if centre is None or attempt == settings.eos_recenter:
            break
        window = centre * (1 + spread)
    recentred = len(volumes) > settings.eos_points
    order = np.argsort(volumes)
    scale = (fit["V0"] / v_in) ** (1 / 3) if "V0" in fit else None
    return {
        "volumes_A3": [volumes[i] for i in order],
        "energies_eV": [energies[i] for i in order],
        "n_atoms": len(atoms),
        "V0_A3": _num(fit.get("V0")),
        "E0_eV": _num(fit.get("E0")),
        "B0_GPa": _num(fit.get("B0")),
        "B0_prime": _num(fit.get("Bp")),
        "scale0": _num(scale),
        "a0_A": _num(scale * atoms.cell.lengths()[0]) if scale else None,
        "recentred": recentred,
        "V0_in_range": bool(scale is not None and min(v) <= fit["V0"] <= max(v)),
        "ions_relaxed": relaxed,
        "error": fit.get("error"),
        **_cost(counter, start),
    }


# ----------------------------------------------------------------------------------------------
# reference state


def _reference(
    counter: CountingCalculator, atoms: Atoms, settings: PhysicsSettings
) -> tuple[Atoms, dict, np.ndarray]:
    """The bulk state the other properties start from: ``atoms`` with its ions relaxed (when
    forces do not vanish), evaluated once with stress when the calculator gives it; and its
    forces (n_atoms, 3) eV/Å."""
    start = counter.tally()
    ref = _attach(atoms, counter)
    extra = ("stress",) if "stress" in counter.implemented_properties else ()
    with counter.requesting(*extra):
        relax = _relax(ref, settings.ion_fmax, settings.ion_steps, settings)
        energy = float(ref.get_potential_energy())
        forces = ref.get_forces()
        stress = ref.get_stress() / units.GPa if extra else None
    info = {
        "energy_eV": energy,
        "energy_per_atom_eV": energy / len(ref),
        "n_atoms": len(ref),
        "cell_A": ref.cell.array.tolist(),
        "stress_GPa": stress.tolist() if stress is not None else None,
        "pressure_GPa": float(-stress[:3].mean()) if stress is not None else None,
        "ions_relaxed": relax["relaxed"],
        "max_force_eV_A": relax["max_force_eV_A"],
        **_cost(counter, start),
    }
    ref.calc = None
    return ref, info, forces


# ----------------------------------------------------------------------------------------------
# elastic constants


def _is_cubic_cell(atoms: Atoms, tol: float = 1e-6) -> bool:
    lengths, angles = atoms.cell.cellpar()[:3], atoms.cell.cellpar()[3:]
    return bool(np.ptp(lengths) <= tol * lengths.max() and np.allclose(angles, 90.0, atol=1e-4))


def _strain_tensor(j: int, amount: float) -> np.ndarray:
    """(3, 3) symmetric strain of Voigt component ``j``; shears are engineering strains."""
    eps = np.zeros((3, 3))
    a, b = _VOIGT[j]
    if a == b:
        eps[a, a] = amount
    else:
        eps[a, b] = eps[b, a] = amount / 2
    return eps


def _stress_column(
    counter: CountingCalculator, ref: Atoms, j: int, settings: PhysicsSettings
) -> tuple[np.ndarray, list[dict]]:
    """dσ/dε_j (6,) in GPa by central differences, ions relaxed in each strained cell.

    The −δ relaxation starts from the +δ relaxation mirrored (exact for a harmonic crystal),
    which usually leaves it nothing to do.
    """
    delta = settings.elastic_strain
    stresses, relax_info, shift = [], [], None
    for sign in (1.0, -1.0):
        strained = ref.copy()
        strained.set_cell(ref.cell.array @ (np.eye(3) + _strain_tensor(j, sign * delta)), True)
        unrelaxed = strained.get_scaled_positions(wrap=False)
        if shift is not None:
            strained.set_scaled_positions(unrelaxed - shift)
        strained.calc = counter
        info = _relax(strained, settings.ion_fmax, settings.ion_steps, settings)
        shift = strained.get_scaled_positions(wrap=False) - unrelaxed
        stresses.append(strained.get_stress())
        relax_info.append(info)
    column = (stresses[0] - stresses[1]) / (2 * delta) / units.GPa  # (6,)
    return column, relax_info


def _cubic_matrix(c11: float, c12: float, c44: float) -> np.ndarray:
    matrix = np.zeros((6, 6))
    matrix[:3, :3] = c12
    matrix[np.arange(3), np.arange(3)] = c11
    matrix[np.arange(3, 6), np.arange(3, 6)] = c44
    return matrix


def _cubic_consistent(columns: dict[int, np.ndarray]) -> tuple[bool, float]:
    """Whether the ε_xx and γ_yz responses show cubic symmetry; and the largest mismatch (GPa)."""
    xx, yz = columns[0], columns[3]
    mismatch = max(abs(xx[1] - xx[2]), *np.abs(xx[3:]), *np.abs(yz[[0, 1, 2, 4, 5]]))
    return bool(mismatch <= max(0.5, 0.01 * abs(xx[0]))), float(mismatch)


def elastic_constants(
    calc: BaseCalculator, atoms: Atoms, settings: PhysicsSettings | None = None
) -> dict:
    """Relaxed-ion elastic constants (GPa) of ``atoms`` as it is (call it at the EOS minimum).

    C_ij = dσ_i/dε_j by central differences of the calculator's stress (ASE sign: positive is
    tensile, σ = (1/V) ∂E/∂ε) under ±``elastic_strain``, with the ions relaxed in each strained
    cell wherever the forces do not vanish. A cubic cell needs two patterns (ε_xx → C11, C12;
    γ_yz → C44); "auto" checks the responses are cubic and otherwise computes all six.

    Returns: matrix_GPa (6×6, Voigt, symmetrised), C11_GPa, C12_GPa, C44_GPa (the [0,0], [0,1]
    and [3,3] entries), cubic, patterns, strain, asymmetry_GPa, bulk_voigt_GPa,
    shear_voigt_GPa, ions_relaxed, relax_converged, max_residual_force_eV_A, calls.
    """
    settings = settings or PhysicsSettings()
    _check_structure(atoms, "elastic_constants")
    counter = _counting(calc)
    if "stress" not in counter.implemented_properties:
        raise ValueError(
            f"elastic constants need stress; {type(counter.calc).__name__} does not implement it"
        )
    start = counter.tally()
    ref = atoms.copy()
    mode = settings.elastic_patterns
    cubic = mode == "cubic" or (mode == "auto" and _is_cubic_cell(ref))
    patterns = [0, 3] if cubic else list(range(6))
    columns, relax_info, mismatch = {}, [], None
    with counter.requesting("stress"):
        for j in patterns:
            columns[j], info = _stress_column(counter, ref, j, settings)
            relax_info += info
        if cubic:
            consistent, mismatch = _cubic_consistent(columns)
            if not consistent and mode == "auto":
                cubic = False
                for j in (1, 2, 4, 5):
                    columns[j], info = _stress_column(counter, ref, j, settings)
                    relax_info += info
                patterns = list(range(6))
    if cubic:
        xx, yz = columns[0], columns[3]
        matrix = _cubic_matrix(xx[0], 0.5 * (xx[1] + xx[2]), yz[3])
        asymmetry = 0.0
    else:
        raw = np.stack([columns[j] for j in range(6)], axis=1)  # (6, 6): C[i, j] = dσ_i/dε_j
        matrix, asymmetry = 0.5 * (raw + raw.T), float(np.abs(raw - raw.T).max() / 2)
    d = np.diag(matrix)
    bulk_v = (matrix[:3, :3].sum()) / 9
    shear_v = (d[:3].sum() - (matrix[0, 1] + matrix[0, 2] + matrix[1, 2]) + 3 * d[3:].sum()) / 15
    return {
        "matrix_GPa": matrix.tolist(),
        "C11_GPa": float(matrix[0, 0]),
        "C12_GPa": float(matrix[0, 1]),
        "C44_GPa": float(matrix[3, 3]),
        "cubic": bool(cubic),
        "patterns": [["xx", "yy", "zz", "yz", "xz", "xy"][j] for j in patterns],
        "strain": settings.elastic_strain,
        "cubic_mismatch_GPa": mismatch,
        "asymmetry_GPa": asymmetry,
        "bulk_voigt_GPa": float(bulk_v),
        "shear_voigt_GPa": float(shear_v),
        "ions_relaxed": any(r["relaxed"] for r in relax_info),
        "relax_converged": all(r["converged"] for r in relax_info),
        "max_residual_force_eV_A": max(r["max_force_eV_A"] for r in relax_info),
        **_cost(counter, start),
    }


# ----------------------------------------------------------------------------------------------
# phonons


def _have_phonopy() -> bool:
    try:
        import phonopy  # noqa: F401
    except ImportError:
        return False
    return True


def _to_phonopy(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        scaled_positions=atoms.get_scaled_positions(),
        masses=atoms.get_masses(),
    )


def _repeats(atoms: Atoms, target_atoms: int) -> list[int]:
    """The diagonal repeats :func:`mlff.distill.sampling.supercell` would use."""
    big = supercell(atoms, target_atoms)
    return [int(round(r)) for r in big.cell.lengths() / atoms.cell.lengths()]


def _qpoint_frequencies(ph, qpoints) -> np.ndarray:
    """(n_q, n_branches) THz; phonopy ≥ 2.20 and 4.x."""
    result = ph.run_qpoints(np.asarray(qpoints, dtype=float))
    if result is None:  # phonopy < 3 returns nothing
        return np.asarray(ph.get_qpoints_dict()["frequencies"])
    return np.asarray(result.frequencies)


def _band_structure(ph, points: int) -> dict:
    """Frequencies along ASE's standard path for the lattice of phonopy's primitive cell."""
    from ase.cell import Cell

    path = Cell(ph.primitive.cell).bandpath(npoints=points)
    x, ticks, labels = path.get_linear_kpoint_axis()
    freqs = _qpoint_frequencies(ph, path.kpts)  # (n_q, n_branches)
    return {
        "path": path.path,
        "x": [float(v) for v in x],
        "ticks": [float(v) for v in ticks],
        "labels": list(labels),
        "frequencies_THz": freqs.tolist(),
    }


@contextmanager
def _quiet_phonopy() -> Iterator[None]:
    """Silence phonopy's notes on how it resolved the primitive cell (we choose explicitly)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*primitive_matrix defaulted")
        warnings.filterwarnings("ignore", message=".*Point group symmetries of supercell")
        yield


def _phonopy_phonons(
    counter: CountingCalculator, atoms: Atoms, settings: PhysicsSettings, forces0: np.ndarray
) -> dict:
    from phonopy import Phonopy

    reps = _repeats(atoms, settings.phonon_supercell_atoms)
    unit = _to_phonopy(atoms)
    with _quiet_phonopy():
        ph = Phonopy(unit, np.diag(reps), primitive_matrix="auto", symprec=settings.phonon_symprec)
    ph.generate_displacements(distance=settings.phonon_displacement, is_plusminus="auto")
    sc = ph.supercell
    # Forces of the undisplaced supercell: the unit cell's forces, tiled (no call needed).
    unit_index = np.array([sc.u2u_map[k] for k in sc.s2u_map])
    residual = np.asarray(forces0)[unit_index]  # (n_super, 3)
    sets = []
    for cell in ph.supercells_with_displacements:
        probe = Atoms(
            cell.symbols,
            cell=cell.cell,
            scaled_positions=cell.scaled_positions,
            masses=cell.masses,
            pbc=True,
        )
        probe.calc = counter
        sets.append(probe.get_forces() - residual)
    ph.forces = np.array(sets)
    ph.produce_force_constants()
    # Γ of the input cell itself (the same set the finite-difference path gives).
    with _quiet_phonopy():
        at_cell = Phonopy(unit, np.diag(reps), primitive_matrix=np.eye(3), is_symmetry=False)
    at_cell.force_constants = ph.force_constants
    gamma = np.sort(_qpoint_frequencies(at_cell, [[0.0, 0.0, 0.0]])[0])
    try:
        bands = _band_structure(ph, settings.band_points)
        band_error = None
    except Exception as err:  # ASE's bandpath refuses some cells; Γ still stands
        bands, band_error = None, f"{type(err).__name__}: {err}"
    return {
        "method": "phonopy",
        "supercell": reps,
        "supercell_atoms": len(sc),
        "displacements": len(sets),
        "gamma_THz": gamma.tolist(),
        "bands": bands,
        "band_error": band_error,
    }


def _finite_difference_gamma(
    counter: CountingCalculator, atoms: Atoms, settings: PhysicsSettings
) -> dict:
    """Γ frequencies from ± displacements of each atom of the cell itself (all periodic images
    move together, so this is exactly the Γ dynamical matrix). The last atom's column follows
    from translation invariance, so a cell of N atoms costs 6(N − 1) calls."""
    n, h = len(atoms), settings.phonon_displacement
    phi = np.zeros((3 * n, 3 * n))  # (3N, 3N) eV/Å²
    probe = _attach(atoms, counter)
    base = atoms.positions.copy()
    for k in range(n - 1):
        for a in range(3):
            forces = []
            for sign in (1.0, -1.0):
                moved = base.copy()
                moved[k, a] += sign * h
                probe.positions = moved
                forces.append(probe.get_forces().ravel())
            phi[:, 3 * k + a] = -(forces[0] - forces[1]) / (2 * h)
    if n > 1:
        phi[:, 3 * (n - 1) :] = -phi[:, : 3 * (n - 1)].reshape(3 * n, n - 1, 3).sum(axis=1)
    phi = 0.5 * (phi + phi.T)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)  # (3N,)
    eig = np.linalg.eigvalsh(phi * inv_sqrt_m[:, None] * inv_sqrt_m[None, :])
    freqs = np.sign(eig) * np.sqrt(np.abs(eig)) * _THZ  # imaginary shown negative (phonopy's way)
    return {
        "method": "finite-difference",
        "supercell": [1, 1, 1],
        "supercell_atoms": n,
        "displacements": 6 * (n - 1),
        "gamma_THz": np.sort(freqs).tolist(),
        "bands": None,
        "band_error": "band structure needs phonopy",
    }


def phonons(
    calc: BaseCalculator,
    atoms: Atoms,
    settings: PhysicsSettings | None = None,
    forces: np.ndarray | None = None,
) -> dict:
    """Γ-point frequencies (THz) of ``atoms``' own cell, and with phonopy a band structure.

    ``forces`` (n_atoms, 3) are those of ``atoms`` if already known (they are subtracted from
    the displaced supercells' forces; zero for a relaxed crystal). Returns: method, supercell,
    supercell_atoms, displacements, gamma_THz (sorted, 3·n_atoms values, imaginary ones
    negative), max_THz, bands ({path, x, ticks, labels, frequencies_THz (n_q, n_branches)} or
    None), calls.
    """
    settings = settings or PhysicsSettings()
    _check_structure(atoms, "phonons")
    counter = _counting(calc)
    start = counter.tally()
    method = settings.phonon_method
    if method == "phonopy" and not _have_phonopy():
        raise ImportError("phonon_method 'phonopy' needs phonopy: pip install 'mlff[physics]'")
    if method == "phonopy" or (method == "auto" and _have_phonopy()):
        if forces is None:
            forces = _attach(atoms, counter).get_forces()
        result = _phonopy_phonons(counter, atoms, settings, forces)
    else:
        result = _finite_difference_gamma(counter, atoms, settings)
    result["max_THz"] = float(max(result["gamma_THz"]))
    return {**result, **_cost(counter, start)}


# ----------------------------------------------------------------------------------------------
# defects


def _bulk_energy_per_atom(counter: CountingCalculator, atoms: Atoms) -> float:
    return float(_attach(atoms, counter).get_potential_energy()) / len(atoms)


def vacancy_formation(
    calc: BaseCalculator,
    atoms: Atoms,
    settings: PhysicsSettings | None = None,
    bulk_energy_per_atom: float | None = None,
) -> dict:
    """Vacancy formation energy (eV): E_f = E_vac − (N−1)/N · E_bulk(N).

    The supercell is the smallest diagonal repeat of ``atoms`` with ≥ ``vacancy_atoms`` atoms;
    atom ``vacancy_index`` is removed; E_bulk(N)/N is ``bulk_energy_per_atom`` (one call on
    ``atoms`` if not given — exact for a periodic model). Unrelaxed costs one call; the
    relaxation (cell fixed) at most ``defect_steps`` more. For a compound this is the energy to
    remove one atom at the average bulk energy per atom, not a chemical-potential-referenced
    value.

    Returns: n_atoms (before removal), element, unrelaxed_eV, relaxed_eV (None if not
    relaxed), converged, steps, max_force_eV_A, calls.
    """
    settings = settings or PhysicsSettings()
    _check_structure(atoms, "vacancy_formation")
    counter = _counting(calc)
    start = counter.tally()
    if bulk_energy_per_atom is None:
        bulk_energy_per_atom = _bulk_energy_per_atom(counter, atoms)
    big = supercell(atoms, settings.vacancy_atoms)
    n = len(big)
    if settings.vacancy_index >= n:
        raise ValueError(
            f"vacancy_index = {settings.vacancy_index} but the supercell has {n} atoms; "
            f"vacancy_index must be 0 to {n - 1}"
        )
    element = big[settings.vacancy_index].symbol
    del big[settings.vacancy_index]
    probe = _attach(big, counter)
    reference = (n - 1) * bulk_energy_per_atom
    unrelaxed = float(probe.get_potential_energy()) - reference
    relaxed, relax = None, {"converged": None, "steps": 0, "max_force_eV_A": None}
    if settings.vacancy_relax:
        relax = _relax(probe, settings.defect_fmax, settings.defect_steps, settings)
        relaxed = float(probe.get_potential_energy()) - reference
    return {
        "n_atoms": n,
        "element": element,
        "unrelaxed_eV": _num(unrelaxed),
        "relaxed_eV": _num(relaxed),
        "converged": relax["converged"],
        "steps": relax["steps"],
        "max_force_eV_A": relax["max_force_eV_A"],
        **_cost(counter, start),
    }


def _slab(atoms: Atoms, settings: PhysicsSettings) -> Atoms:
    """Whole repeat units of ``atoms`` along ``surface_miller``, ≥ ``surface_thickness`` thick,
    with ``surface_vacuum`` on both sides; the normal is open unless ``surface_periodic``."""
    from ase.build import surface

    miller = tuple(int(m) for m in settings.surface_miller)
    unit = surface(atoms, miller, 1, periodic=True)  # cell[2]: one repeat unit
    normal = np.cross(unit.cell[0], unit.cell[1])
    repeat = abs(float(np.dot(unit.cell[2], normal / np.linalg.norm(normal))))
    layers = max(1, math.ceil(settings.surface_thickness / repeat - 1e-9))
    slab = surface(
        atoms, miller, layers, vacuum=settings.surface_vacuum, periodic=settings.surface_periodic
    )
    return slab


def surface_energy(
    calc: BaseCalculator,
    atoms: Atoms,
    settings: PhysicsSettings | None = None,
    bulk_energy_per_atom: float | None = None,
) -> dict:
    """Surface energy γ = (E_slab − n·E_bulk/atom) / (2A) of the ``surface_miller`` surface.

    The slab is made of whole repeat units of the bulk (so it has the bulk's composition); it
    is unrelaxed unless ``surface_relax``. Returns: miller, n_atoms, layers, thickness_A, area_A2,
    energy_eV_A2, energy_J_m2, relaxed, converged, steps, calls.
    """
    settings = settings or PhysicsSettings()
    _check_structure(atoms, "surface_energy")
    counter = _counting(calc)
    start = counter.tally()
    if bulk_energy_per_atom is None:
        bulk_energy_per_atom = _bulk_energy_per_atom(counter, atoms)
    slab = _attach(_slab(atoms, settings), counter)
    relax = {"relaxed": False, "converged": None, "steps": 0}
    if settings.surface_relax:
        relax = _relax(slab, settings.defect_fmax, settings.defect_steps, settings)
    energy = float(slab.get_potential_energy())
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    gamma = (energy - len(slab) * bulk_energy_per_atom) / (2 * area)  # eV/Å²
    z = slab.positions @ (np.cross(slab.cell[0], slab.cell[1]) / area)
    return {
        "miller": list(settings.surface_miller),
        "n_atoms": len(slab),
        "thickness_A": float(np.ptp(z)),
        "area_A2": area,
        "vacuum_A": settings.surface_vacuum,
        "periodic_normal": settings.surface_periodic,
        "energy_eV_A2": _num(gamma),
        "energy_J_m2": _num(gamma * EV_A2_TO_J_M2),
        "relaxed": relax["relaxed"],
        "converged": relax["converged"],
        "steps": relax["steps"],
        **_cost(counter, start),
    }


# ----------------------------------------------------------------------------------------------
# the crystal driver


def crystal_physics(
    calc: BaseCalculator, atoms: Atoms, settings: PhysicsSettings | None = None
) -> dict:
    """The crystal properties in ``settings.properties`` of the crystal ``atoms`` (a small cell:
    the conventional or primitive one).

    The EOS comes first; the others are computed at its minimum (``atoms`` scaled
    isotropically to V0, ions relaxed only where forces do not vanish by symmetry), the
    "reference" state, which costs one call. Without "eos" the reference is ``atoms`` itself.

    Returns a dict with one section per property (see each function) plus ``reference``; every
    section has its ``calls``; :func:`total_calls` sums them.
    """
    settings = settings or PhysicsSettings()
    _check_structure(atoms, "crystal_physics")
    counter = _counting(calc)
    out: dict[str, Any] = {}
    start_atoms = atoms.copy()
    start_atoms.calc = None
    scale = 1.0
    if "eos" in settings.properties:
        out["eos"] = equation_of_state(counter, start_atoms, settings)
        scale = out["eos"]["scale0"] or 1.0
    ref, out["reference"], forces = _reference(counter, _scaled(start_atoms, scale), settings)
    e_atom = out["reference"]["energy_per_atom_eV"]
    if "elastic" in settings.properties:
        out["elastic"] = elastic_constants(counter, ref, settings)
    if "phonons" in settings.properties:
        out["phonons"] = phonons(counter, ref, settings, forces=forces)
    if "vacancy" in settings.properties:
        out["vacancy"] = vacancy_formation(counter, ref, settings, bulk_energy_per_atom=e_atom)
    if "surface" in settings.properties:
        out["surface"] = surface_energy(counter, ref, settings, bulk_energy_per_atom=e_atom)
    out["settings"] = settings.to_dict()
    return out


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


# ----------------------------------------------------------------------------------------------
# comparison

#: Default tolerances on |relative error| (g(r): on the L1 difference itself), from the product
#: requirements. ``None`` reports a value without judging it.
DEFAULT_TOLERANCES: dict[str, float | None] = {
    "a0": 0.002,
    "B0": 0.03,
    "B0'": None,
    "C11": 0.05,
    "C12": 0.05,
    "C44": 0.05,
    "Cij": 0.05,  # the other entries of a non-cubic matrix
    "vacancy": 0.05,
    "vacancy_unrelaxed": 0.05,
    "surface": 0.05,
    "phonon_max": 0.02,
    "gr_l1": 0.05,
    "diffusion": 0.20,
}

# (row name, section, key, unit); "elastic" rows come from the matrix (see _elastic_rows).
_SCALARS = (
    ("a0", "eos", "a0_A", "Å"),
    ("B0", "eos", "B0_GPa", "GPa"),
    ("B0'", "eos", "B0_prime", ""),
    ("elastic", "elastic", None, "GPa"),
    ("phonon_max", "phonons", "max_THz", "THz"),
    ("vacancy", "vacancy", "relaxed_eV", "eV"),
    ("vacancy_unrelaxed", "vacancy", "unrelaxed_eV", "eV"),
    ("surface", "surface", "energy_J_m2", "J/m²"),
    ("diffusion", "liquid", "diffusion_A2_ps", "Å²/ps"),
)


def _tolerances(tolerances: Mapping[str, float | None] | None) -> dict[str, float | None]:
    merged = dict(DEFAULT_TOLERANCES)
    for name, value in (tolerances or {}).items():
        if name not in merged:
            raise ValueError(f"unknown tolerance {name!r}; known: {', '.join(DEFAULT_TOLERANCES)}")
        if value is not None:
            _float(f"tolerance {name!r}", value, 0.0)
        merged[name] = value
    return merged


def _row(
    name: str,
    section: str,
    unit: str,
    teacher,
    student,
    tol: float | None,
    noise: float | None = None,
) -> dict:
    t, s = _num(teacher), _num(student)
    if t is None or s is None:
        error = None
    elif t == 0.0:
        error = 0.0 if s == 0.0 else math.copysign(math.inf, s)
    else:
        error = (s - t) / abs(t)
    return _judged(
        {"property": name, "section": section, "unit": unit, "teacher": t, "student": s},
        _num(error),
        "relative",
        tol,
        noise,
    )


def _judged(row: dict, error: float | None, kind: str, tol: float | None, noise) -> dict:
    """Complete a row: pass/fail on |error| <= tol, and whether a failure is within twice the
    statistical noise of the comparison (same units as the error; None when not estimated)."""
    passed = None if tol is None else (error is not None and abs(error) <= tol)
    noise = _num(noise)
    within = (
        None if passed is not False or noise is None or error is None else abs(error) <= 2 * noise
    )
    return {
        **row,
        "error": error,
        "error_kind": kind,
        "tolerance": tol,
        "noise": noise,
        "passed": passed,
        "within_noise": within,
    }


def _mean_known(*values) -> float | None:
    known = [float(v) for v in values if _num(v) is not None]
    return sum(known) / len(known) if known else None


def _elastic_rows(t: Mapping, s: Mapping, tol: dict) -> list[dict]:
    if t.get("cubic"):
        return [
            _row(name, "elastic", "GPa", t[f"{name}_GPa"], s.get(f"{name}_GPa"), tol[name])
            for name in ("C11", "C12", "C44")
        ]
    tm = np.array(t["matrix_GPa"], dtype=float)
    sm = np.array(s.get("matrix_GPa") or np.full((6, 6), np.nan), dtype=float)
    big = 0.05 * np.abs(tm).max()
    rows = []
    for i in range(6):
        for j in range(i, 6):
            if abs(tm[i, j]) >= big:
                name = f"C{i + 1}{j + 1}"
                rows.append(
                    _row(name, "elastic", "GPa", tm[i, j], sm[i, j], tol.get(name, tol["Cij"]))
                )
    return rows


def compare_physics(
    teacher: Mapping[str, Any],
    student: Mapping[str, Any],
    tolerances: Mapping[str, float | None] | None = None,
) -> dict:
    """Teacher vs student, property by property.

    ``teacher`` and ``student`` are results of :func:`crystal_physics` and/or
    :func:`liquid_physics` (merged dicts are fine). ``tolerances`` override
    :data:`DEFAULT_TOLERANCES` by name. A property the teacher has but the student lacks, or has
    as None/non-finite, fails; one the teacher lacks is skipped.

    Returns {"rows": [{property, section, unit, teacher, student, error (signed: relative
    (s−t)/|t|, or the g(r) L1 difference), error_kind, tolerance, noise, passed,
    within_noise}], "passed", "failed": [names], "skipped": [names]}. ``noise`` (liquid rows
    only) is the difference two independent runs of the same potential would show, estimated
    from each run's halves; ``within_noise`` marks a failure no larger than twice it, i.e. one
    a longer or larger liquid run may resolve.
    """
    tol = _tolerances(tolerances)
    rows, skipped = [], []
    for name, section, key, unit in _SCALARS:
        t, s = teacher.get(section), student.get(section) or {}
        if section == "elastic":
            if t and t.get("matrix_GPa") is not None:
                rows += _elastic_rows(t, s, tol)
            else:
                skipped.append(name)
        elif not t or _num(t.get(key)) is None:
            skipped.append(name)
        elif name == "phonon_max" and abs(t[key]) < 0.1:  # only acoustic modes at Γ
            skipped.append(name)
        else:
            noise = None
            if name == "diffusion":  # the spread of D between independent runs, relative
                spread = _mean_known(t.get("diffusion_noise_A2_ps"), s.get("diffusion_noise_A2_ps"))
                noise = spread / abs(t[key]) if spread is not None and t[key] else None
            rows.append(_row(name, section, unit, t[key], s.get(key), tol[name], noise))
    t_liq, s_liq = teacher.get("liquid"), student.get("liquid") or {}
    if t_liq and t_liq.get("g_r"):
        l1 = (
            rdf_l1(s_liq["r_A"], s_liq["g_r"], t_liq["r_A"], t_liq["g_r"])
            if s_liq.get("g_r")
            else None
        )
        noise = _mean_known(t_liq.get("g_r_noise_l1"), s_liq.get("g_r_noise_l1"))
        row = {"property": "gr_l1", "section": "liquid", "unit": "", "teacher": None}
        rows.append(_judged({**row, "student": None}, _num(l1), "l1", tol["gr_l1"], noise))
    else:
        skipped.append("gr_l1")
    judged = [r for r in rows if r["passed"] is not None]
    return {
        "rows": rows,
        "passed": all(r["passed"] for r in judged),
        "failed": [r["property"] for r in judged if not r["passed"]],
        "skipped": skipped,
    }


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.4g}"


def format_physics_table(comparison: Mapping[str, Any]) -> str:
    """A markdown table of :func:`compare_physics`' rows."""
    lines = [
        "| property | unit | teacher | student | error | noise | tolerance | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison["rows"]:
        error = row["error"]
        if error is None:
            err = "—"
        elif row["error_kind"] == "l1":
            err = f"L1 {100 * error:.2f}%"
        else:
            err = f"{100 * error:+.2f}%"
        tol = "—" if row["tolerance"] is None else f"{100 * row['tolerance']:.3g}%"
        verdict = {True: "pass", False: "**FAIL**", None: "—"}[row["passed"]]
        if row.get("within_noise"):
            verdict += " (within noise: run longer)"
        noise = row.get("noise")
        noise = "—" if noise is None else f"±{100 * noise:.2g}%"
        lines.append(
            f"| {row['property']} | {row['unit']} | {_fmt(row['teacher'])} | "
            f"{_fmt(row['student'])} | {err} | {noise} | {tol} | {verdict} |"
        )
    verdict = (
        "all checks pass" if comparison["passed"] else "failed: " + ", ".join(comparison["failed"])
    )
    return "\n".join(lines) + f"\n\n{verdict}\n"
