"""Resident memory over many force calls of a distilled student, with Verlet-list rebuilds.

    python benchmark/rss_growth.py RUN_DIR [--calls 100000] [--warmup 5000] [--atoms 64]
                                           [--amplitude 0.2] [--json OUT]

Each call asks for energy and forces of the same cell with every atom displaced from its
start by a random vector of length up to ``--amplitude`` Å (fresh each call), so the
0.5 Å-skin Verlet list is rebuilt whenever some atom has moved more than skin/2 since the
last build. RSS (``/proc/self/statm``) is read after the warm-up calls and at the end, with
no tracemalloc or profiler running. Issue target: RSS grows by at most 5 MB over 100,000 calls.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np
import torch

from mlff import DistilledCalculator
from mlff.distill import seed_structure, supercell
from mlff.md.memory import MB, rss_bytes


def rss_growth(
    run: str, calls: int, warmup: int, atoms_count: int, amplitude: float, seed: int = 0
) -> dict:
    calc = DistilledCalculator(checkpoint_path=run)
    atoms = supercell(seed_structure(calc.metadata["config"]["structure"]), atoms_count)
    start = atoms.get_positions()  # (n_atoms, 3)
    rng = np.random.default_rng(seed)

    def call() -> None:
        step = rng.standard_normal(start.shape)
        step *= (
            amplitude * rng.random((len(start), 1)) / np.linalg.norm(step, axis=1, keepdims=True)
        )
        atoms.positions = start + step
        calc.calculate(atoms, ["energy", "forces"], ["positions"])

    for _ in range(warmup):
        call()
    gc.collect()
    rebuilds0, rss0 = calc.graphs.rebuilds, rss_bytes()
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    seconds = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_bytes()
    return {
        "atoms": len(atoms),
        "calls": calls,
        "warmup_calls": warmup,
        "amplitude_A": amplitude,
        "rebuilds": calc.graphs.rebuilds - rebuilds0,
        "rss_start_MB": rss0 / MB,
        "rss_end_MB": rss1 / MB,
        "rss_growth_MB": (rss1 - rss0) / MB,
        "ms_per_call": seconds / calls * 1e3,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="student run directory or student.json")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--atoms", type=int, default=64)
    parser.add_argument(
        "--amplitude", type=float, default=0.2, help="largest displacement per call, Å"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if (
        args.calls < 1
        or args.warmup < 0
        or args.atoms < 1
        or args.amplitude < 0
        or args.threads < 1
    ):
        parser.error(
            "--calls, --atoms and --threads must be positive, --warmup and --amplitude non-negative"
        )
    torch.set_num_threads(args.threads)
    result = rss_growth(args.run, args.calls, args.warmup, args.atoms, args.amplitude)
    print(
        f"{result['calls']} calls on {result['atoms']} atoms, "
        f"{result['rebuilds']} Verlet rebuilds, {result['ms_per_call']:.3f} ms/call: "
        f"RSS {result['rss_start_MB']:.1f} -> {result['rss_end_MB']:.1f} MB "
        f"({result['rss_growth_MB']:+.2f} MB; target <= 5 MB per 100,000 calls)"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
