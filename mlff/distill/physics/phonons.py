"""Phonons: Γ frequencies and band structure with phonopy, or Γ alone by finite differences."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from mlff.distill.physics.counting import CountingCalculator, _attach, _cost, _counting
from mlff.distill.physics.settings import PhysicsSettings, _check_structure
from mlff.distill.sampling import supercell

__all__ = ["phonons"]

#: sqrt(eV / (Å² amu)) → THz (ordinary frequency, not angular).
_THZ = math.sqrt(units._e / units._amu) * 1e10 / (2 * math.pi) / 1e12


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
    count = len(ph.supercells_with_displacements)
    if count > settings.phonon_max_displacements:
        return {
            "method": "phonopy",
            "skipped": f"{count} displaced supercells of {len(sc)} atoms needed, more than "
            f"phonon_max_displacements = {settings.phonon_max_displacements}",
            "supercell": reps,
            "supercell_atoms": len(sc),
            "displacements": 0,
            "gamma_THz": [],
            "bands": None,
            "band_error": None,
        }
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
    result["max_THz"] = float(max(result["gamma_THz"])) if result["gamma_THz"] else None
    return {**result, **_cost(counter, start)}
