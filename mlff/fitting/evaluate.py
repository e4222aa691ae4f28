"""``mlff eval``: a student's predictions on the user's data, written beside the labels
(``MLFF_energy``, ``MLFF_forces``, ``MLFF_stress`` in an extxyz file), with error tables per
config_type and a parity plot where the data have labels."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from mlff.fitting.data import LabelKeys, read_dataset

__all__ = ["PREDICTION_KEYS", "eval_student"]

#: Where the predictions go: ``info`` for energy (eV) and stress (eV/Å³, Voigt), ``arrays``
#: for forces (eV/Å).
PREDICTION_KEYS = {"energy": "MLFF_energy", "forces": "MLFF_forces", "stress": "MLFF_stress"}


def eval_student(
    student: str | os.PathLike,
    data: Sequence[str],
    out: str | os.PathLike,
    keys: LabelKeys | None = None,
    log=print,
) -> dict | None:
    """Predict every configuration of ``data`` with ``student`` (a run directory,
    ``student.json`` or a name in the models directory) and write ``out`` (extxyz). Beside it:
    ``<out>.errors.json`` and ``<out>.parity.png`` when the data have labels. Returns the error
    table as a dict, or None without labels."""
    from ase.io import write

    from mlff.distilled import DistilledCalculator
    from mlff.fitting.errors import error_table, predict
    from mlff.fitting.parity import parity_plot
    from mlff.io import atomic_write

    out = Path(out)
    if out.suffix not in (".xyz", ".extxyz"):
        raise ValueError(f"--out {out}: predictions are written as extxyz; end it in .extxyz")
    path = Path(student)
    calc = (
        DistilledCalculator(checkpoint_path=path)
        if path.exists()
        else DistilledCalculator(model=str(student))
    )
    configs = read_dataset(data, keys, require_labels=False)
    predictions = predict(calc, configs)
    frames = []
    for atoms, pred in zip(configs, predictions, strict=True):
        frame = atoms.copy()
        frame.calc = atoms.calc  # the reference labels, written under their ASE names
        frame.info[PREDICTION_KEYS["energy"]] = pred.energy
        frame.arrays[PREDICTION_KEYS["forces"]] = pred.forces
        if pred.stress is not None:
            frame.info[PREDICTION_KEYS["stress"]] = pred.stress
        frames.append(frame)
    text = io.StringIO()
    write(text, frames, format="extxyz")
    atomic_write(out, lambda tmp: Path(tmp).write_text(text.getvalue()))
    log(f"wrote {len(frames)} configurations with predictions to {out}")
    labelled = [a.calc is not None for a in configs]
    if not any(labelled):
        log("the data have no labels: no errors to report")
        return None
    table = error_table(configs, predictions)
    log(str(table))
    stem = out.with_suffix("")
    document = json.dumps(
        {"student": str(student), "data": list(map(str, data)), **table.to_dict()}
    )
    atomic_write(
        stem.with_name(stem.name + ".errors.json"), lambda tmp: Path(tmp).write_text(document)
    )
    parity_plot(configs, predictions, stem.with_name(stem.name + ".parity.png"), title=str(student))
    return table.to_dict()
