"""Loading calculators from specs for the MD tools, and the pre-flight check that a calculator
can run a structure.

A spec is ``teacher:NAME`` (``sevennet-0``, ``chgnet``, ``emt``, via
:func:`mlff.distill.get_teacher`), a student path (a run directory or ``student.json``), or the
name of a student in the models directory (:func:`mlff.distilled.models_dir`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

__all__ = [
    "LoadedCalculator",
    "load_calculator",
    "parse_dtype",
    "check_compatible",
    "calculator_elements",
]

_ACCEPTED_SPECS = (
    "teacher:sevennet-0, teacher:chgnet, teacher:emt, a student run directory or student.json, "
    "or a student name in the models directory"
)

_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "double": torch.float64,
    "float": torch.float32,
}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float64"``/``"float32"`` (or the torch dtypes) → the torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in (torch.float64, torch.float32):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; accepted: float64, float32")
    return _DTYPES[key]


@dataclass
class LoadedCalculator:
    """A calculator built from a spec, with what the reports say about it."""

    name: str
    calc: BaseCalculator
    spec: str
    kind: str  # "teacher" or "student"

    def describe(self) -> dict:
        info = {"spec": self.spec, "kind": self.kind, "class": type(self.calc).__name__}
        for attr in ("device", "dtype", "backend"):
            if hasattr(self.calc, attr):
                info[attr] = str(getattr(self.calc, attr))
        checkpoint = getattr(self.calc, "checkpoint_path", None)
        if checkpoint is not None:
            info["checkpoint"] = str(checkpoint)
        return info


def load_calculator(
    spec: str,
    device: str = "cpu",
    dtype: str | torch.dtype = "float64",
    name: str | None = None,
    backend: str = "auto",
    num_threads: int | None = None,
) -> LoadedCalculator:
    """Build the calculator a spec names (see the module docstring). ``dtype``, ``backend``
    and ``num_threads`` (see :class:`~mlff.calculators.SiteCalculator`) apply to students;
    teachers run as they are."""
    from mlff.distilled import DistilledCalculator

    text = str(spec).strip()
    torch_dtype = parse_dtype(dtype)
    if text.lower().startswith("teacher:"):
        from mlff.distill.teachers import get_teacher

        teacher = text.split(":", 1)[1]
        return LoadedCalculator(
            name or teacher.lower(), get_teacher(teacher, device=device), text, "teacher"
        )
    path = text.split(":", 1)[1] if text.lower().startswith("student:") else text
    if os.path.exists(path):
        calc = DistilledCalculator(
            checkpoint_path=path,
            device=device,
            dtype=torch_dtype,
            backend=backend,
            num_threads=num_threads,
        )
        label = os.path.basename(os.path.normpath(path))
        label = (
            os.path.basename(os.path.dirname(os.path.abspath(path)))
            if label == "student.json"
            else label
        )
        return LoadedCalculator(name or label.removesuffix(".json"), calc, text, "student")
    if os.sep in path or path.endswith(".json"):
        raise FileNotFoundError(
            f"calculator spec {spec!r}: no such file or directory; accepted: {_ACCEPTED_SPECS}"
        )
    try:
        calc = DistilledCalculator(
            model=path, device=device, dtype=torch_dtype, backend=backend, num_threads=num_threads
        )
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"calculator spec {spec!r} is not teacher:NAME, not an existing path, and not a "
            f"known student: {err}"
        ) from None
    return LoadedCalculator(name or path, calc, text, "student")


def calculator_elements(calc: BaseCalculator) -> tuple[str, ...] | None:
    """The elements ``calc`` declares it can do, or ``None`` where it does not say."""
    from mlff.calculators import SiteCalculator
    from mlff.distill.teachers import _supported

    if isinstance(calc, SiteCalculator):
        return tuple(calc.model.elements)
    return _supported(calc)


def check_compatible(
    calc: BaseCalculator, atoms: Atoms, name: str = "calculator", stress: bool = False
) -> None:
    """Raise ``ValueError`` before any MD if ``calc`` cannot run ``atoms``: an element it does not
    know, stress it cannot give (``stress=True``, for NPT), or a trial energy/forces call that
    fails or is not finite. The trial runs on a copy; ``atoms`` is left alone."""
    formula = atoms.get_chemical_formula()
    known = calculator_elements(calc)
    if known is not None:
        missing = sorted(set(atoms.get_chemical_symbols()) - set(known))
        if missing:
            raise ValueError(
                f"{name} ({type(calc).__name__}) cannot handle element(s) {', '.join(missing)} "
                f"in {formula}; it knows: {', '.join(known)}"
            )
    if stress and "stress" not in getattr(calc, "implemented_properties", ()):
        raise ValueError(
            f"{name} ({type(calc).__name__}) gives no stress, which NPT needs; "
            f"it implements: {', '.join(calc.implemented_properties)}"
        )
    probe = atoms.copy()
    probe.calc = calc
    try:
        energy = probe.get_potential_energy()
        forces = probe.get_forces()
        values = [np.atleast_1d(energy), forces]
        if stress:
            values.append(probe.get_stress())
    except Exception as err:  # any failure of the model on this structure, reported up front
        raise ValueError(
            f"{name} ({type(calc).__name__}) cannot handle {formula} ({len(atoms)} atoms): "
            f"{type(err).__name__}: {err}"
        ) from err
    finally:
        if hasattr(calc, "reset"):
            calc.reset()  # the MD starts from a cold calculator
    if not all(np.isfinite(v).all() for v in values):
        raise ValueError(
            f"{name} ({type(calc).__name__}) gives non-finite energy, forces or stress on {formula}"
        )
