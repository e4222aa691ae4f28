"""What a benchmark ran on: package versions, machine, threads, git revision."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["environment_info", "git_revision"]

_PACKAGES = ("mlff", "torch", "ase", "numpy", "scipy", "e3nn", "vesin", "sevenn", "chgnet")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision(path: str | os.PathLike | None = None) -> dict | None:
    """``{"revision": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: the
    mlff package), or ``None`` outside a checkout or without git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if sha.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {
        "revision": sha.stdout.strip(),
        "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None,
    }


def environment_info() -> dict:
    """Versions (``packages``), hardware and threads (``machine``) and ``git`` (or ``None``)."""
    import torch

    packages = {"python": platform.python_version()}
    packages.update({name: _version(name) for name in _PACKAGES})
    cuda = {"available": torch.cuda.is_available()}
    if cuda["available"]:
        cuda.update(
            device_count=torch.cuda.device_count(),
            device_name=torch.cuda.get_device_name(0),
            cuda_version=torch.version.cuda,
        )
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": cuda,
    }
    return {"packages": packages, "machine": machine, "git": git_revision()}
