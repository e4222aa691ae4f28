"""Long MD survival runs of a distilled student, the measurements behind docs/distillation.md:
Langevin at the top and the bottom of its temperature range, NPT-like MD (Berendsen barostat)
at the top temperature and pressure, hole scans, and, for a second (crystal-only) student, the
step at which the extrapolation guard stops it against the step at which it falls apart.

    python benchmark/md_survival.py runs/si-sevennet --ps 100 --npt-ps 10 \
        --guarded runs/si-crystal-only --guard-temperature 2000 --out survival.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from ase import units
from ase.md.langevin import Langevin

from mlff import DistilledCalculator
from mlff.distill import sampling
from mlff.distill.assess import survival
from mlff.holes import hole_scans, holes_table
from mlff.thermal import thermalize


def _guard_run(student: str, temperature: float, steps: int, threshold: float, seed: int) -> dict:
    """Langevin MD at ``temperature`` watched by the guard in "warn" mode, continued until
    the structure falls apart: the step of the first warning against the step of collapse."""
    from mlff.md import ExtrapolationGuard

    atoms = sampling.supercell(sampling.seed_structure("Si-diamond"), 64)
    atoms.calc = DistilledCalculator(checkpoint_path=student, uncertainty=True)
    rng = np.random.default_rng(seed)
    thermalize(atoms, temperature, rng=rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
    guard = ExtrapolationGuard(dyn, threshold=threshold, interval=10, action="warn")
    collapse = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in range(steps // 10):
            dyn.run(10)
            d = atoms.get_all_distances(mic=True)
            np.fill_diagonal(d, np.inf)
            if not np.isfinite(atoms.positions).all() or d.min() < 0.5:
                collapse = (block + 1) * 10
                break
    warned = [check.step for check in guard.history if check.grade > threshold]
    return {
        "temperature_K": temperature,
        "threshold": threshold,
        "first_warning_step": warned[0] if warned else None,
        "collapse_step": collapse,
        "max_grade_history": [(c.step, c.grade) for c in guard.history[-20:]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", help="run directory of the student to test")
    parser.add_argument("--structure", default="Si-diamond")
    parser.add_argument("--top", type=float, default=2500.0, help="top temperature, K")
    parser.add_argument("--bottom", type=float, default=300.0, help="bottom temperature, K")
    parser.add_argument("--npt-temperature", type=float, default=2000.0)
    parser.add_argument("--pressure", type=float, default=5.0, help="GPa")
    parser.add_argument("--ps", type=float, default=100.0, help="Langevin runs, ps")
    parser.add_argument("--npt-ps", type=float, default=10.0)
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--guarded", help="a crystal-only student for the guard check")
    parser.add_argument("--guard-temperature", type=float, default=2000.0)
    parser.add_argument("--guard-threshold", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="survival.json")
    args = parser.parse_args()

    calc = DistilledCalculator(checkpoint_path=args.student)
    atoms = sampling.supercell(sampling.seed_structure(args.structure), 64)
    steps = int(args.ps * 1000 / args.timestep)
    result: dict = {"student": args.student, "runs": {}}
    scans = hole_scans(calc, atoms, start=0.8)
    result["holes"] = [s.to_dict() for s in scans]
    print(holes_table(scans))
    for label, temperature, n, pressure in (
        ("top", args.top, steps, None),
        ("bottom", args.bottom, steps, None),
        ("npt", args.npt_temperature, int(args.npt_ps * 1000 / args.timestep), args.pressure),
    ):
        start = time.perf_counter()
        run = survival(calc, atoms, temperature, n, args.timestep, args.seed, pressure=pressure)
        run["wall_s"] = time.perf_counter() - start
        result["runs"][label] = run
        print(label, json.dumps(run))
    if args.guarded:
        from mlff.md.guard import DEFAULT_THRESHOLD

        threshold = args.guard_threshold or DEFAULT_THRESHOLD
        result["guard"] = _guard_run(
            args.guarded, args.guard_temperature, 5000, threshold, args.seed
        )
        print("guard", json.dumps(result["guard"]))
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2, default=float)


if __name__ == "__main__":
    main()
