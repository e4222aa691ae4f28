"""Per-call time of the default stack against thread count and system size, on an idle machine
and with the other cores busy: the measurements behind the calculators' default thread count.

    python benchmark/threads.py --sizes 64 216 512 1000 1728 --threads 1 2

"Loaded" runs a busy loop on every core but the first (``--load spin``: a second job, a
browser) or a torch job on all cores (``--load torch``: a teacher beside the student). Each
cell is the median of ``--calls`` calls on a kept Verlet list, taken in interleaved rounds so
that drift on a noisy machine hits every cell alike. ``--backend torch`` times the torch route
(``backend="torch"``, ``compile=True``, models without kernels) instead of the numba kernels.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np
import torch
from ase.build import bulk

from mlff import ACEModel, OneBody, PairModel, StackedCalculator
from mlff.testing import random_linear_parameters


def _spin() -> None:
    while True:
        pass


def _torch_job() -> None:
    """Another torch process at work on every core (a teacher, a training job)."""
    a = torch.randn(256, 256)
    while True:
        a = torch.tanh(a @ a)


def _calculator(atoms, backend: str) -> StackedCalculator:
    pair = PairModel(["Si"], cutoff=5.0, repulsion=True)
    ace = ACEModel(["Si"], cutoff=5.0)
    random_linear_parameters(pair, atoms, energy_scale=0.5, seed=1)
    random_linear_parameters(ace, atoms, energy_scale=0.5, seed=2)
    return StackedCalculator([OneBody({"Si": -4.0}), pair, ace], backend=backend)


def _cubic_si(n_atoms: int):
    repeat = round((n_atoms / 8) ** (1 / 3))
    if 8 * repeat**3 != n_atoms:
        raise SystemExit(f"--sizes takes 8·k³ atoms (64, 216, 512, 1000, 1728, …), got {n_atoms}")
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    atoms.rattle(0.02, seed=0)
    return atoms


def _time_calls(calc, atoms, threads: int, calls: int) -> float:
    torch.set_num_threads(threads)
    times = []
    for _ in range(calls):
        atoms.positions[0, 0] += 1e-6  # a new step on the kept list
        start = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces", "stress"], ["positions"])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(sizes, thread_counts, calls: int, rounds: int, backend: str, load: str) -> dict:
    """{(load, n_atoms, threads): median seconds per call}."""
    systems = {n: _cubic_si(n) for n in sizes}
    calcs = {n: _calculator(atoms, backend) for n, atoms in systems.items()}
    for n in sizes:  # compile and build the lists
        for threads in thread_counts:
            _time_calls(calcs[n], systems[n], threads, 2)
    results: dict = {}
    for load in ("idle", "loaded"):
        spinners = []
        if load == "loaded":
            spinners = [
                multiprocessing.Process(target=_spin, daemon=True)
                for _ in range(max(1, (os.cpu_count() or 2) - 1))
            ]
            for p in spinners:
                p.start()
            time.sleep(0.5)
        try:
            samples: dict = {}
            for _ in range(rounds):
                for n in sizes:
                    for threads in thread_counts:
                        per_call = max(3, calls * 64 // n // (10 if backend == "torch" else 1))
                        samples.setdefault((n, threads), []).append(
                            _time_calls(calcs[n], systems[n], threads, per_call)
                        )
            for key, values in samples.items():
                results[(load, *key)] = float(np.median(values))
        finally:
            for p in spinners:
                p.terminate()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 216, 512, 1000, 1728])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--calls", type=int, default=60, help="calls per cell at 64 atoms")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["auto", "torch"], default="auto")
    parser.add_argument(
        "--load",
        choices=["spin", "torch"],
        default="spin",
        help="the load: a busy loop on every core but one, or a torch job on all cores",
    )
    args = parser.parse_args()
    results = measure(args.sizes, args.threads, args.calls, args.rounds, args.backend, args.load)
    print(f"{os.cpu_count()} cores, backend {args.backend!r}; ms per energy+forces+stress call")
    header = "load     atoms  " + "  ".join(f"{t:>2d} thr" for t in args.threads)
    print(header + "   best")
    for load in ("idle", "loaded"):
        for n in args.sizes:
            row = [results[(load, n, t)] for t in args.threads]
            best = args.threads[int(np.argmin(row))]
            cells = "  ".join(f"{1e3 * v:6.2f}" for v in row)
            print(f"{load:7s} {n:6d}  {cells}   {best}")


if __name__ == "__main__":
    main()
