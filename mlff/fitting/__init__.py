"""Least-squares fitting of linear readouts: assembly, solvers, errors, committees."""

from mlff.fitting.assembly import (
    LinearProblem,
    NormalEquations,
    Weights,
    assemble,
    energy_forces_virial_basis,
    potential_energy_basis,
)
from mlff.fitting.errors import ErrorTable, evaluate_errors
from mlff.fitting.fit import FitResult, fit, smoothness_prior
from mlff.fitting.labels import Labels, read_labels
from mlff.fitting.reference import estimate_e0
from mlff.fitting.solvers import BLR, QR, RRQR, Solution, TruncatedSVD

__all__ = [
    "Weights",
    "LinearProblem",
    "NormalEquations",
    "assemble",
    "potential_energy_basis",
    "energy_forces_virial_basis",
    "Labels",
    "read_labels",
    "QR",
    "RRQR",
    "TruncatedSVD",
    "BLR",
    "Solution",
    "ErrorTable",
    "evaluate_errors",
    "FitResult",
    "fit",
    "smoothness_prior",
    "estimate_e0",
]
