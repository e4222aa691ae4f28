"""`make demo`: distil Si from SevenNet-0 over 300-2500 K and 0-5 GPa (crystal, surfaces,
defects, liquid and amorphous), print the errors, the physics against the teacher and the
speed-up, then run a short NVE with the student through the unchanged ASE script (one changed
line)."""

from __future__ import annotations

import sys
import time

import numpy as np
from ase import units
from ase.md.verlet import VelocityVerlet

from mlff import DistilledCalculator
from mlff.distill import seed_structure, supercell
from mlff.distill.loop import DistillConfig, distill
from mlff.distill.report import physics_lines
from mlff.fitting import ErrorTable
from mlff.thermal import thermalize


def main(out: str = "runs/si-sevennet") -> None:
    start = time.perf_counter()
    report = distill(DistillConfig(teacher="sevennet-0", structure=["Si-diamond"], out=out))
    calls = report["teacher_calls"]
    print(
        f"\ndistillation took {time.perf_counter() - start:.0f} s; {calls['total']} teacher calls "
        f"(training {calls['training']}, validation {calls['validation']}, "
        f"physics {calls['physics']})"
    )
    print("\nstudent vs SevenNet-0 on held-out teacher-labelled configurations:")
    print(ErrorTable.from_dict(report["errors"]["test"]))
    print()
    print("\n".join(physics_lines(report["assessment"])))
    speed = report["speed"]
    print(
        f"\nMD step at {speed['atoms']} atoms: "
        f"SevenNet-0 {speed['teacher_s_per_step'] * 1e3:.0f} ms, "
        f"student {speed['student_s_per_step'] * 1e3:.1f} ms -> {speed['speedup']:.0f}x faster"
    )

    atoms = supercell(seed_structure("Si-diamond"), 216)
    atoms.calc = DistilledCalculator(checkpoint_path=out)  # was: SevenNetCalculator("7net-0")
    thermalize(atoms, 600, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    e0 = atoms.get_total_energy()
    t0 = time.perf_counter()
    dyn.run(500)
    elapsed = time.perf_counter() - t0
    drift = (atoms.get_total_energy() - e0) / len(atoms) * 1e3
    print(
        f"\n500 NVE steps of {len(atoms)} atoms with the student: {elapsed:.1f} s, "
        f"T = {atoms.get_temperature():.0f} K, energy change {drift:+.3f} meV/atom"
    )
    print(f"report: {out}/report.md")


if __name__ == "__main__":
    main(*sys.argv[1:])
