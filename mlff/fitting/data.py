"""A user's labelled data, read as ``mlff fit`` and ``mlff eval`` take it: extxyz, an ASE
database or any file ASE reads, several files or globs, with the label names of the user's
code (``--energy-key REF_energy`` as MACE and ACEpotentials take them).

Every configuration comes back with its labels on a ``SinglePointCalculator`` (energy eV,
forces eV/Å, stress eV/Å³ in ASE's Voigt order) and ``info["config_type"]``, which is what
:func:`~mlff.fitting.labels.read_labels` and the fit read. A **virial** label W (eV, as
extxyz files from VASP/QE converters and MACE's ``REF_virials`` give it) becomes the stress
σ = −W / V; mlff's own virial rows are W again (docs/fitting.md).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.geometry import cell_volume
from mlff.protocol import voigt

__all__ = ["ISOLATED_ATOM", "LabelKeys", "isolated_atom_energies", "read_dataset"]

#: The config_type of single-atom configurations whose energies are E0 (MACE's convention).
ISOLATED_ATOM = "IsolatedAtom"
_GLOB = set("*?[")


@dataclass(frozen=True)
class LabelKeys:
    """Where the labels are: ``info`` names for energy, stress and virial, the ``arrays``
    name for forces; ``energy``/``forces``/``stress`` also match what ASE's readers put on a
    calculator under those names. ``virial`` (None: not read) is W in eV."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    virial: str | None = None
    config_type: str = "config_type"

    def __post_init__(self):
        for name in ("energy", "forces", "stress", "virial", "config_type"):
            value = getattr(self, name)
            if value is None and name == "virial":
                continue
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"the {name} key must be a non-empty name, got {value!r}")


def _expand(sources: Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    paths: list[Path] = []
    for source in sources:
        text = str(source)
        if _GLOB & set(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"no file matches {text!r}")
            paths += [Path(m) for m in matches]
        else:
            path = Path(text)
            if not path.is_file():
                raise FileNotFoundError(f"no data file {text!r}")
            paths.append(path)
    if not paths:
        raise ValueError("no data files given")
    return paths


def _read_db(path: Path) -> list[Atoms]:
    from ase.db import connect

    out = []
    with connect(str(path)) as db:
        for row in db.select():
            atoms = row.toatoms()
            atoms.info.update(row.key_value_pairs)
            for key, value in (row.get("data") or {}).items():
                value = np.asarray(value)
                if value.ndim >= 1 and value.shape[0] == len(atoms) and value.ndim == 2:
                    atoms.arrays[key] = value
                else:
                    atoms.info[key] = value
            out.append(atoms)
    return out


def _read_file(path: Path) -> list[Atoms]:
    from ase.io import read

    if path.suffix == ".db":
        configs = _read_db(path)
    else:
        try:
            configs = read(str(path), index=":")
        except Exception as err:  # noqa: BLE001 - any reader failure: name the file
            raise ValueError(f"{path}: ASE cannot read it ({type(err).__name__}: {err})") from None
        configs = configs if isinstance(configs, list) else [configs]
    if not configs:
        raise ValueError(f"{path} holds no configurations")
    return configs


def _calc_result(atoms: Atoms, name: str):
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    return results.get(name)


def _label(atoms: Atoms, key: str, where: str, standard: str):
    """The label named ``key``: ``info`` or ``arrays``, else the calculator's result when the
    key is ASE's own name for it."""
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    if key == standard:
        return _calc_result(atoms, standard)
    return None


def _as_float_array(value, what: str, where: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the {what} label {value!r} is not numeric") from None


def _normalised(atoms: Atoms, keys: LabelKeys, where: str) -> tuple[Atoms, set[str]]:
    """A copy of ``atoms`` with its labels on a SinglePointCalculator; which keys it had."""
    found: set[str] = set()
    results: dict = {}
    energy = _label(atoms, keys.energy, where, "energy")
    if energy is not None:
        energy = _as_float_array(energy, "energy", where)
        if energy.size != 1:
            raise ValueError(
                f"{where}: the energy label has shape {energy.shape}; expected one number"
            )
        results["energy"] = float(energy.reshape(()))
        found.add("energy")
    forces = _label(atoms, keys.forces, where, "forces")
    if forces is not None:
        forces = _as_float_array(forces, "forces", where)
        if forces.shape != (len(atoms), 3):
            raise ValueError(
                f"{where}: forces have shape {forces.shape}; expected ({len(atoms)}, 3)"
            )
        results["forces"] = forces
        found.add("forces")
    # With a virial key, the stress is read only where the user named a stress key too.
    read_stress = keys.virial is None or keys.stress != LabelKeys.stress
    stress = _label(atoms, keys.stress, where, "stress") if read_stress else None
    virial = atoms.info.get(keys.virial) if keys.virial else None
    if stress is not None and virial is not None:
        raise ValueError(
            f"{where}: has both a stress ({keys.stress!r}) and a virial ({keys.virial!r}) "
            "label; give one of --stress-key and --virial-key"
        )
    if virial is not None:
        matrix = _as_float_array(virial, "virial", where)
        matrix = _symmetric(matrix, "virial", where)
        volume = cell_volume(atoms.cell.array.tolist())
        if not (np.isfinite(volume) and volume > 1e-12 and atoms.pbc.all()):
            raise ValueError(
                f"{where}: a virial label needs a 3D-periodic cell of non-zero volume, got "
                f"pbc {atoms.pbc.tolist()} and volume {volume:.3g} Å³"
            )
        results["stress"] = voigt(-matrix / volume)
        found.add("virial")
    elif stress is not None:
        matrix = _symmetric(_as_float_array(stress, "stress", where), "stress", where)
        results["stress"] = voigt(matrix)
        found.add("stress")
    for name, value in results.items():
        bad = ~np.isfinite(np.asarray(value, dtype=float))
        if bad.any():
            raise ValueError(f"{where}: the {name} label contains NaN or inf")
    clean = atoms.copy()  # info and arrays kept (the user's own label names too), no calculator
    clean.info["config_type"] = str(atoms.info.get(keys.config_type, "default"))
    if results:
        clean.calc = SinglePointCalculator(clean, **results)
    return clean, found


def _symmetric(value: np.ndarray, what: str, where: str) -> np.ndarray:
    """A (6,) Voigt, (9,) or (3, 3) tensor as a 3×3 matrix."""
    if value.shape == (6,):
        xx, yy, zz, yz, xz, xy = value
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if value.shape in ((9,), (3, 3)):
        return value.reshape(3, 3)
    raise ValueError(
        f"{where}: the {what} label has shape {value.shape}; expected (6,), (9,) or (3, 3)"
    )


def read_dataset(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    keys: LabelKeys | None = None,
    require_labels: bool = True,
) -> list[Atoms]:
    """Every configuration of ``sources`` (files or globs, in order), labels normalised.

    Raises, before anything is fitted or written: FileNotFoundError for a missing file or a
    glob that matches nothing; ValueError for an unreadable or empty file, a label of the wrong
    shape or with NaN (file and index named), a label key that no configuration has (with the
    keys the data do have), or data without any label (unless ``require_labels`` is False).
    """
    keys = keys or LabelKeys()
    out: list[Atoms] = []
    seen: set[str] = set()
    available: set[str] = set()
    for path in _expand(sources):
        for index, atoms in enumerate(_read_file(path)):
            where = f"{path} configuration {index}"
            clean, found = _normalised(atoms, keys, where)
            seen |= found
            available |= set(atoms.info) | (set(atoms.arrays) - {"numbers", "positions"})
            available |= set(getattr(atoms.calc, "results", {}) or {})
            out.append(clean)
    defaults = LabelKeys()
    for name in ("energy", "forces", "stress"):
        asked = getattr(keys, name)
        if asked != getattr(defaults, name) and name not in seen:
            raise ValueError(
                f"no configuration has the {name} key {asked!r}; the data have: "
                f"{', '.join(sorted(available)) or 'nothing'}"
            )
    if keys.virial is not None and "virial" not in seen:
        raise ValueError(
            f"no configuration has the virial key {keys.virial!r}; the data have: "
            f"{', '.join(sorted(available)) or 'nothing'}"
        )
    if not seen and require_labels:
        raise ValueError(
            "the data have no energy, forces, stress or virial labels under the keys "
            f"{keys.energy!r}, {keys.forces!r}, {keys.stress!r}"
            + (f", {keys.virial!r}" if keys.virial else "")
            + f"; the data have: {', '.join(sorted(available)) or 'nothing'} "
            "(name yours with --energy-key, --forces-key, --stress-key or --virial-key)"
        )
    return out


def isolated_atom_energies(configs: Sequence[Atoms]) -> tuple[dict[str, float], list[Atoms]]:
    """E0 per element from single-atom configurations of config_type ``IsolatedAtom``, and
    the other configurations. An IsolatedAtom configuration with more than one atom or
    without an energy label is refused."""
    e0: dict[str, float] = {}
    rest: list[Atoms] = []
    for index, atoms in enumerate(configs):
        if atoms.info.get("config_type") != ISOLATED_ATOM:
            rest.append(atoms)
            continue
        energy = _calc_result(atoms, "energy")
        if len(atoms) != 1 or energy is None:
            raise ValueError(
                f"configuration {index} has config_type {ISOLATED_ATOM} but "
                f"{len(atoms)} atoms and {'no' if energy is None else 'an'} energy; expected "
                "one atom with its energy"
            )
        symbol = atoms[0].symbol
        if symbol in e0 and not np.isclose(e0[symbol], energy):
            raise ValueError(
                f"two {ISOLATED_ATOM} energies for {symbol}: {e0[symbol]} and {energy} eV"
            )
        e0[symbol] = float(energy)
    return e0, rest
