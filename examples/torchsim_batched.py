"""Many systems at once with torch-sim: Langevin MD of replicas and a batched FIRE relaxation
of a student, checked against per-system ASE.

    python examples/torchsim_batched.py [STUDENT] [--replicas 64] [--steps 200] [--device cpu]

STUDENT is a run directory or student.json (default: the default Si student fitted to
Stillinger-Weber, from benchmark/lammps_snap.py, which needs the lammps extra). Each replica
is a 64-atom diamond-Si cell. After the MD, the forces torch-sim computed for the final
batch are compared with ``DistilledCalculator``/``SiteCalculator`` system by system; after
the relaxation, the largest remaining force of every system is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch_sim as ts
from ase.build import bulk

from mlff import SiteCalculator
from mlff.io import load_model
from mlff.torchsim import MlffModel


def student(path: str | None):
    if path:
        return load_model(path)[0]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
    import lammps_snap

    return lammps_snap.sw_si_student()


def replicas(n: int, rattle: float, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
        atoms.rattle(rattle, seed=int(rng.integers(2**31)))
        out.append(atoms)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("student", nargs="?")
    p.add_argument("--replicas", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    model = student(args.student)
    sim = MlffModel(model, device=args.device)

    systems = replicas(args.replicas, 0.05)
    start = time.perf_counter()
    final = ts.integrate(
        system=systems,
        model=sim,
        integrator=ts.nvt_langevin,
        n_steps=args.steps,
        temperature=300.0,
        timestep=0.001,  # ps
    )
    seconds = time.perf_counter() - start
    n_atoms = final.n_atoms
    print(
        f"Langevin, {args.replicas} replicas × 64 atoms, {args.steps} steps: {seconds:.1f} s, "
        f"{n_atoms * args.steps / seconds:.0f} atoms·steps/s"
    )
    out = sim(final)
    calc = SiteCalculator(model)
    worst = 0.0
    for k, atoms in enumerate(final.to_atoms()):
        atoms.calc = calc
        mine = out["forces"][final.system_idx == k].cpu().numpy()
        worst = max(worst, float(np.abs(mine - atoms.get_forces()).max()))
    print(f"largest force difference from SiteCalculator, system by system: {worst:.2e} eV/Å")

    start = time.perf_counter()
    relaxed = ts.optimize(
        system=replicas(args.replicas, 0.15, seed=1),
        model=sim,
        optimizer=ts.optimizers.fire,
        convergence_fn=ts.runners.generate_force_convergence_fn(
            force_tol=0.01, include_cell_forces=False
        ),
        max_steps=2000,
    )
    forces = sim(relaxed)["forces"]
    fmax = [
        float(forces[relaxed.system_idx == k].norm(dim=1).max()) for k in range(relaxed.n_systems)
    ]
    print(
        f"FIRE, {args.replicas} systems: {time.perf_counter() - start:.1f} s; largest remaining "
        f"force per system from {min(fmax):.3g} to {max(fmax):.3g} eV/Å"
    )
    return 0 if worst < 1e-8 else 1


if __name__ == "__main__":
    sys.exit(main())
