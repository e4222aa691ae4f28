"""Error tables: RMSE and MAE of energy per atom, forces and stress, per config_type."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.units import GPa

from mlff.fitting.labels import read_labels

__all__ = ["ErrorTable", "Prediction", "error_table", "evaluate_errors", "predict"]

_UNITS = {"energy": "meV/atom", "forces": "meV/Å", "stress": "GPa"}


@dataclass
class ErrorTable:
    """``rows[config_type][property] = {"rmse", "mae", "count"}``; config_type "all" pools all.

    Units: energy meV/atom, forces meV/Å (per component), stress GPa (per Voigt component).
    """

    rows: dict[str, dict[str, dict[str, float]]]

    def rmse(self, prop: str, config_type: str = "all") -> float:
        return self.rows[config_type][prop]["rmse"]

    def mae(self, prop: str, config_type: str = "all") -> float:
        return self.rows[config_type][prop]["mae"]

    def to_dict(self) -> dict:
        return {"units": dict(_UNITS), "rows": self.rows}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> ErrorTable:
        return cls(rows=data["rows"])

    def __str__(self) -> str:
        header = (
            f"{'config_type':<16} {'n':>5} | {'E RMSE':>8} {'E MAE':>8} | "
            f"{'F RMSE':>8} {'F MAE':>8} | {'S RMSE':>7} {'S MAE':>7}"
        )
        units = f"{'':<16} {'':>5} | {'meV/atom':>17} | {'meV/Å':>17} | {'GPa':>15}"
        lines = [header, units, "-" * len(header)]
        order = sorted(k for k in self.rows if k != "all") + ["all"]
        for ctype in order:
            row = self.rows[ctype]
            n = int(row.get("configs", {}).get("count", 0))
            lines.append(
                f"{ctype:<16} {n:>5} | "
                f"{_cell(row, 'energy', 'rmse', '8.2f')} {_cell(row, 'energy', 'mae', '8.2f')} | "
                f"{_cell(row, 'forces', 'rmse', '8.1f')} {_cell(row, 'forces', 'mae', '8.1f')} | "
                f"{_cell(row, 'stress', 'rmse', '7.3f')} {_cell(row, 'stress', 'mae', '7.3f')}"
            )
        return "\n".join(lines)


def _cell(row: dict, prop: str, stat: str, fmt: str) -> str:
    """One formatted table cell, or a right-aligned "-" where the property has no labels."""
    v = row.get(prop, {}).get(stat)
    return f"{v:{fmt}}" if v is not None else "-".rjust(int(fmt.split(".")[0]))


@dataclass(frozen=True)
class Prediction:
    """A calculator's results for one configuration: energy eV, forces (n, 3) eV/Å, stress
    (6,) eV/Å³ (None for a cell that is not 3D-periodic)."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None


def predict(calculator, dataset: Iterable[Atoms]) -> list[Prediction]:
    """``calculator``'s energy, forces and (3D-periodic cells) stress for each configuration."""
    out = []
    for atoms in dataset:
        probe = atoms.copy()
        probe.calc = calculator
        stress = probe.get_stress() if probe.pbc.all() else None
        out.append(Prediction(probe.get_potential_energy(), probe.get_forces(), stress))
    return out


def error_table(dataset: Sequence[Atoms], predictions: Sequence[Prediction]) -> ErrorTable:
    """RMSE and MAE of ``predictions`` against the labels of ``dataset``, per config_type."""
    residuals: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for index, (atoms, pred) in enumerate(zip(dataset, predictions, strict=True)):
        labels = read_labels(atoms, index)
        groups = (labels.config_type, "all")
        for g in groups:
            residuals[g]["configs"].append(np.zeros(1))
        if labels.energy is not None:
            err = (pred.energy - labels.energy) / len(atoms) * 1e3
            for g in groups:
                residuals[g]["energy"].append(np.atleast_1d(err))
        if labels.forces is not None:
            err = (pred.forces - labels.forces).reshape(-1) * 1e3
            for g in groups:
                residuals[g]["forces"].append(err)
        if labels.stress is not None and pred.stress is not None:
            err = (pred.stress - labels.stress) / GPa
            for g in groups:
                residuals[g]["stress"].append(err)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for group, props in residuals.items():
        rows[group] = {}
        for prop, chunks in props.items():
            values = np.concatenate(chunks)
            if prop == "configs":
                rows[group][prop] = {"count": float(len(values))}
                continue
            rows[group][prop] = {
                "rmse": float(np.sqrt(np.mean(values**2))),
                "mae": float(np.mean(np.abs(values))),
                "count": float(len(values)),
            }
    return ErrorTable(rows)


def evaluate_errors(calculator, dataset: Iterable[Atoms]) -> ErrorTable:
    """Evaluate ``calculator`` (any ASE calculator) against the labels of ``dataset``."""
    dataset = list(dataset)
    return error_table(dataset, predict(calculator, dataset))
