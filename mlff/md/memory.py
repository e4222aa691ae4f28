"""Process memory probes: resident set size (RSS) and CUDA allocations, in bytes.

RSS comes from ``/proc/self/statm`` (Linux, a few µs); elsewhere from psutil when it is
installed, else ``None``. The lifetime peak comes from ``resource.getrusage``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["rss_bytes", "peak_rss_bytes", "cuda_allocated_bytes", "MB"]

MB = 1024.0 * 1024.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Current resident set size of this process (bytes), or ``None`` if it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int | None:
    """Peak RSS of this process over its lifetime (bytes), or ``None`` where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


def cuda_allocated_bytes() -> int | None:
    """Bytes held by torch's CUDA caching allocator on the current device, or ``None`` when
    CUDA has not been initialised in this process (a CPU run never starts it)."""
    try:
        import torch
    except ImportError:
        return None
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return int(torch.cuda.memory_allocated())
