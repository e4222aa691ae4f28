"""``ExtrapolationGuard``: watch a student's MD for atoms outside its training domain.

A student fitted near a crystal and run far beyond its training conditions (a liquid at
2000 K, a compressed cell) meets environments it never saw; a linear site-energy model can
then reward unphysical crowding, atoms fall together and the MD explodes, with nothing said
before. The guard asks the calculator for the per-atom extrapolation grade
(:mod:`mlff.uncertainty`: committee spread over the training set's largest) every
``interval`` steps and, when the largest grade exceeds ``threshold``, writes the frame and
stops the run (:class:`ExtrapolationError`) or warns (:class:`ExtrapolationWarning`, once per
excursion above the threshold).

    calc = DistilledCalculator(checkpoint_path="runs/si", uncertainty=True)
    atoms.calc = calc
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=2000, friction=0.02)
    guard = ExtrapolationGuard(dyn, frames="extrapolating.extxyz")
    dyn.run(10_000)  # raises ExtrapolationError before the student falls apart

The default threshold and interval come from measurements on a Si student at 2000 K and an
EMT Cu student (docs/md.md, "Extrapolation guard").
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ase import Atoms

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_THRESHOLD",
    "ExtrapolationError",
    "ExtrapolationGuard",
    "ExtrapolationWarning",
    "GradeCheck",
]

#: Largest per-atom grade accepted: 1 is the most uncertain atom of the training set. Chosen
#: from the measurements in docs/md.md: training-condition MD stays below it, and a Si student
#: that melts and collapses at 2000 K crosses it tens to hundreds of steps before it does.
DEFAULT_THRESHOLD = 1.0
#: Steps between checks: each check costs one site-basis evaluation, several MD steps of a
#: student on the CPU kernels (docs/md.md), and the collapses measured there were preceded by
#: at least 65 steps above the default threshold.
DEFAULT_INTERVAL = 20
ACTIONS = ("stop", "warn")


class ExtrapolationWarning(UserWarning):
    """An MD run entered configurations where the student extrapolates (``action="warn"``)."""


class ExtrapolationError(RuntimeError):
    """An MD run was stopped because the student extrapolates (``action="stop"``).

    Attributes: ``step``, ``grade`` (the largest), ``atom`` (its index), ``threshold`` and
    ``frames`` (the extxyz file the frame went to, or None).
    """

    def __init__(self, message: str, step: int, grade: float, atom: int, threshold: float, frames):
        super().__init__(message)
        self.step, self.grade, self.atom = step, grade, atom
        self.threshold, self.frames = threshold, frames


class GradeCheck(NamedTuple):
    """One check: the dynamics' step count, the largest per-atom grade and that atom."""

    step: int
    grade: float
    atom: int


def _dynamics_atoms(dyn) -> Atoms:
    """The Atoms an ASE dynamics object moves (unwrapping a filter)."""
    if not callable(getattr(dyn, "attach", None)) or not hasattr(dyn, "atoms"):
        raise ValueError(
            f"dyn = {type(dyn).__name__} object; accepted an ASE dynamics object with attach() "
            "and atoms, e.g. ase.md.langevin.Langevin or ase.md.verlet.VelocityVerlet"
        )
    atoms = dyn.atoms
    if not isinstance(atoms, Atoms):
        atoms = getattr(atoms, "atoms", None)  # a filter around the Atoms
    if not isinstance(atoms, Atoms):
        raise ValueError(
            f"dyn moves a {type(dyn.atoms).__name__}, not ase.Atoms; accepted dynamics over "
            "Atoms or a filter around them"
        )
    return atoms


def _check_calculator(calc) -> None:
    """Refuse a calculator that cannot report ``extrapolation_grade``."""
    from mlff.calculators import SiteCalculator

    fix = (
        "use DistilledCalculator(..., uncertainty=True) on a checkpoint saved with a committee, "
        "or SiteCalculator(model, committee=Committee.from_fit(result, train))"
    )
    if calc is None:
        raise ValueError(f"the dynamics' atoms have no calculator; {fix}")
    if isinstance(calc, SiteCalculator):
        if calc.committee is None or calc.committee_scale is None:
            what = "no committee" if calc.committee is None else "a committee without a scale"
            raise ValueError(
                f"{type(calc).__name__} has {what}, so it cannot report extrapolation_grade; {fix}"
            )
    elif "extrapolation_grade" not in getattr(calc, "implemented_properties", ()):
        raise ValueError(
            f"{type(calc).__name__} does not implement extrapolation_grade; "
            f"the guard needs a mlff student with a committee: {fix}"
        )


class ExtrapolationGuard:
    """An ASE observer that stops or warns when a student's MD extrapolates.

    It attaches itself to ``dyn`` on construction (``dyn.attach(self, interval)``), so it runs
    at the start of ``dyn.run`` and after every ``interval`` steps. Each check asks the
    calculator for ``extrapolation_grade`` at the step's positions: after an MD step the
    energy and forces are there already and are not recomputed, so a check costs one
    site-basis evaluation.

    When the largest grade exceeds ``threshold`` (or is not finite), the frame is appended to
    ``frames`` (extxyz, with the per-atom grade as the array ``extrapolation_grade`` and
    ``step``, ``max_grade``, ``atom``, ``threshold`` in its info) and

    - ``action="stop"``: :class:`ExtrapolationError` is raised, which ends ``dyn.run``;
    - ``action="warn"``: an :class:`ExtrapolationWarning` is issued and the run goes on. Frame
      and warning come once per excursion: again only after a check at or below the threshold.

    Args:
        dyn: an ASE dynamics object whose atoms' calculator reports ``extrapolation_grade``
            (a :class:`~mlff.SiteCalculator` with a :class:`~mlff.uncertainty.Committee`,
            e.g. ``DistilledCalculator(..., uncertainty=True)``).
        threshold: the largest grade accepted (> 0); 1 is the most uncertain training atom.
        interval: steps between checks (a positive integer).
        action: ``"stop"`` or ``"warn"``.
        frames: an extxyz path for the offending frames (appended to), or None for none; the
            last one is kept in :attr:`last_frame` either way.

    Attributes:
        history: a :class:`GradeCheck` (step, largest grade, its atom) per check.
        excursions: how many times the grade went above the threshold.
        last_frame: a copy of the last offending frame (Atoms), or None.
    """

    def __init__(
        self,
        dyn,
        threshold: float = DEFAULT_THRESHOLD,
        interval: int = DEFAULT_INTERVAL,
        action: str = "stop",
        frames: str | os.PathLike | None = None,
    ):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise ValueError(f"threshold = {threshold!r}; accepted a finite number > 0 (a grade)")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold = {threshold!r}; accepted a finite number > 0 (a grade)")
        if isinstance(interval, bool) or not isinstance(interval, numbers.Integral) or interval < 1:
            raise ValueError(f"interval = {interval!r}; accepted a positive integer (MD steps)")
        if action not in ACTIONS:
            raise ValueError(
                f"action = {action!r}; accepted one of {', '.join(map(repr, ACTIONS))}"
            )
        if frames is not None:
            if not isinstance(frames, (str, os.PathLike)) or not str(frames):
                raise ValueError(f"frames = {frames!r}; accepted an extxyz file path or None")
            frames = Path(frames)
            if frames.is_dir():
                raise ValueError(f"frames = {str(frames)!r} is a directory; accepted a file path")
            if not frames.parent.is_dir():
                raise ValueError(
                    f"frames = {str(frames)!r}: its directory {str(frames.parent)!r} does not "
                    "exist; create it or give another path"
                )
        self.atoms = _dynamics_atoms(dyn)
        _check_calculator(self.atoms.calc)
        self.dyn = dyn
        self.threshold = float(threshold)
        self.interval = int(interval)
        self.action = action
        self.frames: Path | None = frames
        self.history: list[GradeCheck] = []
        self.excursions = 0
        self.last_frame: Atoms | None = None
        self._above = False
        dyn.attach(self, interval=self.interval)

    def __repr__(self) -> str:
        return (
            f"ExtrapolationGuard(threshold={self.threshold:g}, interval={self.interval}, "
            f"action={self.action!r}, checks={len(self.history)}, "
            f"max_grade={self.max_grade:.3g})"
        )

    @property
    def max_grade(self) -> float:
        """The largest grade seen so far (0 before the first check)."""
        return max((c.grade for c in self.history), default=0.0)

    @property
    def grades(self) -> np.ndarray:
        """(n_checks,) the largest grade of each check, in order."""
        return np.array([c.grade for c in self.history])

    def __call__(self) -> None:
        self.check()

    def check(self) -> GradeCheck:
        """Check the current configuration now (the observer calls this); returns its record,
        and stops or warns as set when the grade exceeds the threshold."""
        atoms = self.atoms
        grade = np.asarray(atoms.calc.get_property("extrapolation_grade", atoms))  # (n_atoms,)
        step = int(getattr(self.dyn, "nsteps", len(self.history)))
        if grade.size == 0:
            record = GradeCheck(step, 0.0, -1)
        else:
            finite = np.isfinite(grade)
            atom = int(np.argmax(grade)) if finite.all() else int(np.argmin(finite))
            record = GradeCheck(step, float(grade[atom]), atom)
        self.history.append(record)
        if record.grade <= self.threshold:  # NaN is not ≤, so it counts as exceeding
            self._above = False
            return record
        new = not self._above
        self._above = True
        if new:
            self.excursions += 1
        if self.action == "stop" or new:
            self._keep_frame(atoms, grade, record)
        where = f"written to {self.frames}" if self.frames else "not written (frames=None)"
        message = (
            f"extrapolation grade {record.grade:.3g} at atom {record.atom} exceeds the "
            f"threshold {self.threshold:g} at step {record.step}: the student is outside its "
            f"training domain there (grade 1 = its most uncertain training atom); frame {where}. "
            "Label such frames with the teacher and refit, or stay closer to the training "
            "conditions."
        )
        if self.action == "stop":
            raise ExtrapolationError(
                message, record.step, record.grade, record.atom, self.threshold, self.frames
            )
        if new:
            warnings.warn(ExtrapolationWarning(message), stacklevel=2)
        return record

    def _keep_frame(self, atoms: Atoms, grade: np.ndarray, record: GradeCheck) -> None:
        frame = atoms.copy()  # positions, cell, momenta; no calculator
        frame.arrays["extrapolation_grade"] = np.asarray(grade, dtype=np.float64).copy()
        frame.info.update(
            step=record.step, max_grade=record.grade, atom=record.atom, threshold=self.threshold
        )
        self.last_frame = frame
        if self.frames is not None:
            from ase.io import write

            write(self.frames, frame, format="extxyz", append=True)
