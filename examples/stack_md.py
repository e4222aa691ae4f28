"""Compose a stack (E0 + pair + many-body ACE) and drive ASE molecular dynamics with it.

The pair part is fitted to a Morse dimer curve and the ACE part gets small random weights:
this shows the composition and the ASE drop-in, not a physical model of Si. Fitting to
reference data is `mlff.fitting`'s job.
"""

from __future__ import annotations

import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from mlff import ACEModel, OneBody, PairModel, StackedCalculator
from mlff.testing import random_linear_parameters
from mlff.thermal import thermalize


def main() -> None:
    atoms = bulk("Si", "fcc", a=2.35 * 2**0.5, cubic=True).repeat(4)  # 256 atoms
    pair = PairModel(["Si"], cutoff=5.0, repulsion=True)
    r = np.linspace(1.9, 4.95, 200)
    pair.fit_dimer_curve(("Si", "Si"), r, (1 - np.exp(-1.6 * (r - 2.35))) ** 2 - 1)
    ace = ACEModel(["Si"], cutoff=5.0)
    random_linear_parameters(ace, atoms, energy_scale=0.02, seed=0)
    print(ace.describe_basis())

    atoms.calc = StackedCalculator([OneBody({"Si": -4.0}), pair, ace])
    thermalize(atoms, 300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    e0 = atoms.get_total_energy()
    steps = 200
    start = time.perf_counter()
    for _ in range(4):
        dyn.run(steps // 4)
        print(
            f"step {dyn.nsteps:4d}  T = {atoms.get_temperature():6.1f} K  "
            f"E_tot - E_0 = {(atoms.get_total_energy() - e0) / len(atoms) * 1e3:+.4f} meV/atom"
        )
    elapsed = time.perf_counter() - start
    print(
        f"{steps} NVE steps of {len(atoms)} atoms: {elapsed / steps * 1e3:.1f} ms/step, "
        f"{elapsed / steps / len(atoms) * 1e6:.1f} µs/atom/step"
    )


if __name__ == "__main__":
    main()
