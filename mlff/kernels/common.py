"""What every numba kernel shares: compile options, the SLP switch, the thread pool and
integer powers."""

from __future__ import annotations

import threading

import numba

__all__ = ["JIT_OPTIONS", "MAX_KERNEL_POWER", "ipow", "slp_vectorized", "start_thread_pool"]

#: Options of every kernel: compiled once and cached on disk; ``fastmath`` lets LLVM
#: reassociate sums so short loops vectorise (inputs are finite: graphs refuse NaN positions);
#: numpy's error model, because Python's puts a zero check and a raise before every division,
#: which keeps LLVM from vectorising any loop that divides (edges have r > 0: graphs refuse
#: overlapping atoms).
JIT_OPTIONS = dict(cache=True, fastmath=True, nogil=True, error_model="numpy")


class slp_vectorized:
    """Context in which numba compiles with LLVM's SLP (straight-line) vectoriser on.

    numba turns it off by default (``NUMBA_SLP_VECTORIZE=0``); the ACE kernel's 8-atom term
    updates are straight-line code that only it turns into vector instructions. Numba reads
    the flag whenever it optimises a new function, so entering this around a kernel's call
    compiles that kernel (and what it calls) with it. While any thread is inside, the flag is
    on for the whole process (a function another thread compiles then gets SLP too, which
    only changes its speed); the last one out restores numba's setting.
    """

    _lock = threading.Lock()
    _depth = 0
    _saved = 0

    def __enter__(self):
        with slp_vectorized._lock:
            if slp_vectorized._depth == 0:
                slp_vectorized._saved = numba.config.SLP_VECTORIZE
                numba.config.SLP_VECTORIZE = 1
            slp_vectorized._depth += 1

    def __exit__(self, *exc):
        with slp_vectorized._lock:
            slp_vectorized._depth -= 1
            if slp_vectorized._depth == 0:
                numba.config.SLP_VECTORIZE = slp_vectorized._saved


#: Integer powers in the kernels take exponents below 2**_POWER_BITS.
_POWER_BITS = 6
#: The largest exponent of the radial transform and envelope the kernels compute exactly.
MAX_KERNEL_POWER = 2**_POWER_BITS - 1


_pool_lock = threading.Lock()
_pool_started = False


def start_thread_pool() -> None:
    """Start numba's thread pool once, without changing torch's thread count: numba's OpenMP
    layer sets the process's OpenMP thread count when its pool starts, and torch reads that as
    its own (a user's ``torch.set_num_threads(1)`` would silently become the pool's size, the
    number of cores by default).

    The parallel kernels split their work into one range per torch thread and run the ranges
    in a ``prange`` on this pool: numba's own thread count (all cores unless set lower) bounds
    how many run at once, and nothing is set per call (setting and restoring it costs more
    than a small system's step saves)."""
    global _pool_started
    if not _pool_started:
        with _pool_lock:
            if not _pool_started:
                import torch

                torch_threads = torch.get_num_threads()
                numba.get_num_threads()  # starts the pool
                torch.set_num_threads(torch_threads)
                _pool_started = True


@numba.njit(inline="always")
def ipow(x, n):
    """x**n for 0 <= n < 2**_POWER_BITS (1 for n <= 0) by binary powering with a fixed trip
    count and no branches, so a loop over edges that calls it still vectorises."""
    n = max(n, 0)
    out, power = 1.0, x
    for bit in range(_POWER_BITS):
        out *= power if (n >> bit) & 1 else 1.0
        power *= power
    return out
