"""MD tools: side-by-side benchmarks, a per-call profiler, long-NVE validation and the
extrapolation guard."""

from mlff.md.benchmark import BenchmarkResult, BenchmarkSettings, run_benchmark
from mlff.md.drift import EnergyDrift, energy_drift
from mlff.md.ensembles import (
    ENSEMBLES,
    MDSettings,
    initialize_velocities,
    make_integrator,
    resolve_ensemble,
)
from mlff.md.environment import environment_info
from mlff.md.guard import (
    ExtrapolationError,
    ExtrapolationGuard,
    ExtrapolationWarning,
    GradeCheck,
)
from mlff.md.profile import ProfileResult, StageTimer, profile_calculator
from mlff.md.runner import MDRun
from mlff.md.schema import BENCHMARK_SCHEMA, SCHEMA_NAME, SCHEMA_VERSION, check_schema
from mlff.md.structures import SIZES, sized_structure
from mlff.md.validate import Check, ValidationReport, ValidationThresholds, validate_nve

__all__ = [
    "ENSEMBLES",
    "MDSettings",
    "resolve_ensemble",
    "make_integrator",
    "initialize_velocities",
    "SIZES",
    "sized_structure",
    "MDRun",
    "EnergyDrift",
    "energy_drift",
    "BenchmarkSettings",
    "BenchmarkResult",
    "run_benchmark",
    "BENCHMARK_SCHEMA",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "check_schema",
    "ProfileResult",
    "StageTimer",
    "profile_calculator",
    "Check",
    "ValidationReport",
    "ValidationThresholds",
    "validate_nve",
    "environment_info",
    "ExtrapolationGuard",
    "ExtrapolationError",
    "ExtrapolationWarning",
    "GradeCheck",
]
