"""A distilled student on the CPU and on a GPU: MD step time and accuracy per evaluation path.

    python benchmark/device_speed.py RUN_DIR [--sizes 64 512 4096 32768] [--steps 20]
        [--cpu-threads 1] [--teacher sevennet-0] [--no-compile] [--json OUT]

Paths: the CPU numba kernels (the reference, float64), and on CUDA the torch path in float64
and float32 and ``torch.compile`` in both (bf16/fp16: see autocast_accuracy.py). For each path
and size: the median ASE VelocityVerlet step (ms and µs/atom, 1 fs, Si at 300 K), and the
force RMS/max (meV/Å), energy (meV/atom) and stress (GPa) differences from the reference on a
rattled cell. With ``--teacher``, the teacher's step on the same device gives the
student-vs-teacher ratio. The JSON is rewritten after every measurement, so a run cut short
keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time

import numpy as np
import torch
from ase import units
from ase.md.verlet import VelocityVerlet

from mlff import DistilledCalculator
from mlff.distill import get_teacher, seed_structure, supercell
from mlff.thermal import thermalize

GPA = units.GPa  # eV/Å³ per GPa


def si_cell(n_atoms: int, rattle: float, seed: int = 0):
    atoms = supercell(seed_structure("Si-diamond"), n_atoms)
    atoms.positions += np.random.default_rng(seed).normal(0, rattle, atoms.positions.shape)
    return atoms


def md_step_ms(calc, n_atoms: int, steps: int, warmup: int) -> dict:
    atoms = si_cell(n_atoms, 0.02)
    thermalize(atoms, 300, rng=np.random.default_rng(1))
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    t0 = time.perf_counter()
    dyn.run(warmup)  # first calls: graph, kernels or compilation
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        dyn.run(1)
        times.append(time.perf_counter() - t)
    ms = 1e3 * float(np.median(times))
    return {
        "step_ms": ms,
        "us_per_atom": 1e3 * ms / len(atoms),
        "atoms": len(atoms),
        "warmup_s": first_s,
    }


def accuracy(calc, reference, n_atoms: int) -> dict:
    atoms = si_cell(n_atoms, 0.1, seed=2)
    out = []
    for c in (reference, calc):
        a = atoms.copy()
        a.calc = c
        out.append((a.get_potential_energy(), a.get_forces(), a.get_stress()))
    (e0, f0, s0), (e1, f1, s1) = out
    df = 1e3 * (f1 - f0)
    return {
        "force_rms_meV_per_A": float(np.sqrt(np.mean(df**2))),
        "force_max_meV_per_A": float(np.abs(df).max()),
        "energy_meV_per_atom": 1e3 * abs(e1 - e0) / len(atoms),
        "stress_max_GPa": float(np.abs(s1 - s0).max() / GPA),
    }


def paths(with_compile: bool) -> list[tuple[str, dict]]:
    cuda = []
    if torch.cuda.is_available():
        cuda = [
            ("cuda torch float64", dict(device="cuda", dtype=torch.float64)),
            ("cuda torch float32", dict(device="cuda", dtype=torch.float32)),
        ]
        if with_compile:
            cuda += [
                ("cuda compile float64", dict(device="cuda", dtype=torch.float64, compile=True)),
                ("cuda compile float32", dict(device="cuda", dtype=torch.float32, compile=True)),
            ]
    return [("cpu numba float64", dict(device="cpu")), *cuda]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="student run directory or student.json")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096, 32768])
    p.add_argument("--steps", type=int, default=20, help="timed MD steps per path and size")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--cpu-threads", type=int, default=1)
    p.add_argument("--cpu-max-atoms", type=int, default=4096, help="largest size timed on the CPU")
    p.add_argument(
        "--teacher", help="e.g. sevennet-0, timed on the GPU (else the CPU) at the same sizes"
    )
    p.add_argument("--teacher-max-atoms", type=int, default=4096)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json", default="device_speed.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.cpu_threads)

    report = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_threads": args.cpu_threads,
        },
        "run": args.run,
        "results": [],
    }

    def save():
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)

    reference = DistilledCalculator(checkpoint_path=args.run)

    def record(row: dict) -> None:
        report["results"].append(row)
        print(json.dumps(row), flush=True)
        save()

    def time_student(label: str, kwargs: dict) -> None:
        for n in args.sizes:
            if kwargs["device"] == "cpu" and n > args.cpu_max_atoms:
                continue
            row = {"path": label, "size": n}
            try:
                calc = DistilledCalculator(checkpoint_path=args.run, **kwargs)
                row.update(md_step_ms(calc, n, args.steps, args.warmup))
                row["evaluator"] = calc.evaluator.path
                if n == args.sizes[0] and kwargs["device"] != "cpu":
                    row.update(accuracy(calc, reference, n))
            except Exception as err:  # noqa: BLE001 - a failing path is a result, not the end
                row["error"] = f"{type(err).__name__}: {err}"[:500]
            record(row)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def time_teacher() -> None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            teacher = get_teacher(args.teacher, device=device)
        except Exception as err:  # noqa: BLE001
            record(
                {
                    "path": f"teacher {args.teacher} {device}",
                    "error": f"{type(err).__name__}: {err}"[:500],
                }
            )
            return
        for n in [n for n in args.sizes if n <= args.teacher_max_atoms]:
            row = {"path": f"teacher {args.teacher} {device}", "size": n}
            try:
                row.update(md_step_ms(teacher, n, max(3, args.steps // 4), 2))
            except Exception as err:  # noqa: BLE001
                row["error"] = f"{type(err).__name__}: {err}"[:500]
            record(row)

    all_paths = paths(not args.no_compile)
    for label, kwargs in all_paths:
        if not kwargs.get("compile"):
            time_student(label, kwargs)
    if args.teacher:
        time_teacher()
    for label, kwargs in all_paths:  # last: compiling takes the longest
        if kwargs.get("compile"):
            time_student(label, kwargs)
    save()


if __name__ == "__main__":
    main()
