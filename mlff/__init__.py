"""mlff: fast linear site-energy force fields, composed and driven from ASE."""

from mlff import fitting
from mlff.calculators import SiteCalculator, StackedCalculator
from mlff.distilled import DistilledCalculator
from mlff.evaluator import BACKENDS, Evaluator
from mlff.fitting import BLR, QR, RRQR, FitResult, TruncatedSVD, Weights, assemble, fit
from mlff.graph import Graph, build_graph
from mlff.io import load_checkpoint, load_committee, load_model, save_model
from mlff.md import (
    BenchmarkResult,
    ExtrapolationError,
    ExtrapolationGuard,
    ExtrapolationWarning,
    MDSettings,
    ProfileResult,
    ValidationReport,
    ValidationThresholds,
    energy_drift,
    profile_calculator,
    run_benchmark,
    validate_nve,
)
from mlff.models import ACEModel, OneBody, PairModel, ZBLRepulsion
from mlff.models.ace_basis import ACEBasisFunction
from mlff.models.ace_product import ProductPlan
from mlff.protocol import (
    BlockReadout,
    CompiledPart,
    LinearSiteModel,
    SiteModel,
    forces_from_edge_grads,
    stress_from_virial,
    virial_from_edge_grads,
    voigt,
)
from mlff.stack import Stack
from mlff.uncertainty import Committee, candidate_grades, rank_candidates

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "Evaluator",
    "CompiledPart",
    "ProductPlan",
    "voigt",
    "Graph",
    "build_graph",
    "SiteModel",
    "LinearSiteModel",
    "BlockReadout",
    "forces_from_edge_grads",
    "virial_from_edge_grads",
    "stress_from_virial",
    "OneBody",
    "PairModel",
    "ACEModel",
    "ACEBasisFunction",
    "ZBLRepulsion",
    "Stack",
    "SiteCalculator",
    "StackedCalculator",
    "DistilledCalculator",
    "save_model",
    "load_model",
    "load_checkpoint",
    "load_committee",
    "Committee",
    "candidate_grades",
    "rank_candidates",
    "ExtrapolationGuard",
    "ExtrapolationError",
    "ExtrapolationWarning",
    "fitting",
    "fit",
    "assemble",
    "Weights",
    "FitResult",
    "QR",
    "RRQR",
    "TruncatedSVD",
    "BLR",
    "MDSettings",
    "run_benchmark",
    "BenchmarkResult",
    "profile_calculator",
    "ProfileResult",
    "validate_nve",
    "ValidationReport",
    "ValidationThresholds",
    "energy_drift",
]
