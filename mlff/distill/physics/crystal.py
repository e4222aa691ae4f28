"""Crystal properties: equation of state, the reference state, elastic constants, defects
(vacancy, surface) and the :func:`crystal_physics` driver that computes them in turn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from mlff.distill.physics.counting import CountingCalculator, _attach, _cost, _counting
from mlff.distill.physics.phonons import phonons
from mlff.distill.physics.settings import PhysicsSettings, _check_structure, _num
from mlff.distill.sampling import supercell

__all__ = [
    "EV_A2_TO_J_M2",
    "crystal_physics",
    "equation_of_state",
    "elastic_constants",
    "vacancy_formation",
    "surface_energy",
]

#: eV/Å² → J/m².
EV_A2_TO_J_M2 = units._e * 1e20
#: Voigt order [xx, yy, zz, yz, xz, xy] as index pairs.
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


# ----------------------------------------------------------------------------------------------
# relaxation helpers


def _fmax(forces: np.ndarray) -> float:
    return float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1)).max()) if len(forces) else 0.0


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
