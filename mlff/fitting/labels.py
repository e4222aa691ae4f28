"""Reference labels of a configuration: energy, forces and stress, any subset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from mlff.geometry import cell_volume
from mlff.protocol import voigt

__all__ = ["Labels", "read_labels"]


@dataclass(frozen=True)
class Labels:
    """Labels of one configuration; ``None`` where absent.

    energy: eV; forces: (n_atoms, 3) eV/Å; stress: (6,) eV/Å³ in ASE's Voigt order.
    """

    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None
    config_type: str


def _from_calc(atoms: Atoms, key: str):
    calc = atoms.calc
    if calc is None:
        return None
    value = getattr(calc, "results", {}).get(key)
    return None if value is None else np.asarray(value, dtype=float)


def _check_volume(atoms: Atoms, index: int) -> None:
    """A stress label becomes virial rows −σ·V: the cell needs a finite, non-zero volume."""
    volume = cell_volume(atoms.cell.array.tolist())  # NaN or inf for a non-finite cell
    if not (np.isfinite(volume) and volume > 1e-12):
        raise ValueError(
            f"configuration {index}: a stress label needs a 3D cell of finite, non-zero volume, "
            f"got volume {volume:.3g} Å³ (cell {atoms.cell.array.tolist()}); "
            "fix the cell or drop the stress label"
        )


def read_labels(atoms: Atoms, index: int) -> Labels:
    """Labels from a (SinglePoint) calculator's results, else ``atoms.info`` / ``atoms.arrays``.

    ``info["config_type"]`` names the configuration's group (default ``"default"``). A label
    of the wrong shape, containing NaN or inf, or a stress label on a cell of zero or
    non-finite volume raises ``ValueError`` naming ``index``.
    """
    energy = _from_calc(atoms, "energy")
    if energy is None and "energy" in atoms.info:
        energy = np.asarray(atoms.info["energy"], dtype=float)
    forces = _from_calc(atoms, "forces")
    if forces is None and "forces" in atoms.arrays:
        forces = np.asarray(atoms.arrays["forces"], dtype=float)
    stress = _from_calc(atoms, "stress")
    if stress is None and "stress" in atoms.info:
        stress = np.asarray(atoms.info["stress"], dtype=float)
    if stress is not None:
        if stress.shape in ((3, 3), (9,)):
            stress = voigt(stress.reshape(3, 3))
        if stress.shape != (6,):
            raise ValueError(
                f"configuration {index}: stress has shape {stress.shape}; "
                "expected (6,), (3, 3) or (9,)"
            )
        if not atoms.pbc.all():
            stress = None  # no virial rows for non-periodic configurations
    if energy is not None and energy.size != 1:
        raise ValueError(
            f"configuration {index}: the energy label has shape {energy.shape}; "
            "expected one number (eV)"
        )
    if forces is not None and forces.shape != (len(atoms), 3):
        raise ValueError(
            f"configuration {index}: forces have shape {forces.shape}; expected ({len(atoms)}, 3)"
        )
    for name, value in (("energy", energy), ("forces", forces), ("stress", stress)):
        if value is not None and not np.isfinite(value).all():
            raise ValueError(f"configuration {index}: the {name} label contains NaN or inf")
    if stress is not None:
        _check_volume(atoms, index)
    return Labels(
        energy=None if energy is None else float(energy),
        forces=forces,
        stress=stress,
        config_type=str(atoms.info.get("config_type", "default")),
    )
