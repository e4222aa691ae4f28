"""MD tools: side-by-side benchmarks, a per-call profiler and long-NVE validation."""

from mlff.md.drift import EnergyDrift, energy_drift
from mlff.md.ensembles import ENSEMBLES, MDSettings, initialize_velocities, make_integrator, resolve_ensemble
from mlff.md.environment import environment_info
from mlff.md.runner import MDRun
from mlff.md.structures import SIZES, sized_structure

__all__ = [
    "ENSEMBLES", "MDSettings", "resolve_ensemble", "make_integrator", "initialize_velocities",
    "SIZES", "sized_structure",
    "MDRun",
    "EnergyDrift", "energy_drift",
    "environment_info",
]
