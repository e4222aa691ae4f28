"""float32 against float64 for a distilled student: force error and NVE drift.

    python benchmark/precision.py RUN_DIR [--ps 10] [--atoms 64] [--json OUT]

Reports the RMS and max force difference (meV/Å) between dtypes on rattled and hot
configurations, and the total-energy drift (meV/atom/ps, slope of a linear fit) of the same
NVE run (VelocityVerlet, 1 fs, 300 K start) in each dtype, with its OLS standard error (a lower
bound: the residuals are correlated). Issue target: float32 force error <= 1 meV/Å and drift
<= 2x that of float64. Both drifts are tiny next to the energy's fluctuation, so over a few ps
their ratio is mostly noise: a longer --ps narrows it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from ase import units
from ase.md.verlet import VelocityVerlet

from mlff import DistilledCalculator
from mlff.distill import seed_structure, supercell
from mlff.md.drift import energy_drift
from mlff.thermal import thermalize


def force_differences(run: str, atoms_count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    c64 = DistilledCalculator(checkpoint_path=run)
    c32 = DistilledCalculator(checkpoint_path=run, dtype=torch.float32)
    diffs = []
    for sigma in (0.05, 0.1, 0.2):
        atoms = supercell(seed_structure("Si-diamond"), atoms_count)
        atoms.positions += rng.normal(0, sigma, atoms.positions.shape)
        f64 = c64.get_forces(atoms.copy())
        f32 = c32.get_forces(atoms.copy())
        diffs.append((f32 - f64).ravel())
    d = np.concatenate(diffs) * 1e3
    return {"rms_meV_per_A": float(np.sqrt(np.mean(d**2))), "max_meV_per_A": float(np.abs(d).max())}


def nve_drift(run: str, dtype: torch.dtype, atoms_count: int, ps: float, seed: int = 0) -> dict:
    atoms = supercell(seed_structure("Si-diamond"), atoms_count)
    atoms.calc = DistilledCalculator(checkpoint_path=run, dtype=dtype)
    thermalize(atoms, 300, rng=np.random.default_rng(seed))
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    times, energies = [], []

    def record():
        times.append(dyn.get_time() / units.fs)  # fs
        energies.append(atoms.get_total_energy())  # eV

    dyn.attach(record, interval=10)
    start = time.perf_counter()
    dyn.run(int(round(ps * 1000)))
    elapsed = time.perf_counter() - start
    drift = energy_drift(times, energies, len(atoms))
    return {
        "drift_meV_per_atom_per_ps": drift.drift_meV_atom_ps,
        "drift_stderr_meV_per_atom_per_ps": drift.drift_stderr_meV_atom_ps,
        "fluctuation_meV_per_atom": drift.fluctuation_meV_atom,
        "ms_per_step": elapsed / (ps * 1000) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="student run directory or student.json")
    parser.add_argument("--ps", type=float, default=10.0)
    parser.add_argument("--atoms", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out = {"forces": force_differences(args.run, 216)}
    print(
        f"float32 vs float64 forces: RMS {out['forces']['rms_meV_per_A']:.4f} meV/Å, "
        f"max {out['forces']['max_meV_per_A']:.4f} meV/Å"
    )
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        out[name] = nve_drift(args.run, dtype, args.atoms, args.ps)
        print(
            f"{name}: NVE drift {out[name]['drift_meV_per_atom_per_ps']:+.2e} "
            f"± {out[name]['drift_stderr_meV_per_atom_per_ps']:.1e} (OLS) meV/atom/ps, "
            f"fluctuation {out[name]['fluctuation_meV_per_atom']:.4f} meV/atom, "
            f"{out[name]['ms_per_step']:.2f} ms/step",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
