import numpy as np
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from mlff import ACEModel, OneBody, PairModel, StackedCalculator
from mlff.testing import random_linear_parameters
from mlff.thermal import thermalize


def _morse_pair(cutoff: float = 5.0) -> PairModel:
    """A Si–Si pair potential fitted to a Morse well (D = 1 eV, r0 = 2.35 Å): binds the crystal."""
    model = PairModel(["Si"], cutoff=cutoff, n_max=8, repulsion=True)
    r = np.linspace(1.9, cutoff - 0.05, 200)
    misfit = model.fit_dimer_curve(("Si", "Si"), r, (1 - np.exp(-1.6 * (r - 2.35))) ** 2 - 1)
    assert misfit < 0.02
    return model


def test_nve_conserves_energy_with_small_random_many_body_terms():
    # fcc at the Morse bond length: a lattice a pair potential holds together, so the random
    # many-body terms stay a small perturbation along the trajectory.
    atoms = bulk("Si", "fcc", a=2.35 * 2**0.5, cubic=True).repeat((1, 1, 2))
    atoms.rattle(0.02, seed=0)
    ace = ACEModel(["Si"], cutoff=4.5, n_max=6, l_max=3, max_degree={1: 6, 2: 8, 3: 9})
    random_linear_parameters(ace, atoms, energy_scale=0.02, seed=1)
    atoms.calc = StackedCalculator([OneBody({"Si": -4.0}), _morse_pair(), ace])
    thermalize(atoms, 300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    totals, temperatures = [], []

    def record():
        totals.append(atoms.get_total_energy())
        temperatures.append(atoms.get_temperature())

    dyn.attach(record, interval=1)
    dyn.run(2000)
    totals = np.array(totals) / len(atoms)
    assert len(totals) == 2001
    assert np.isfinite(totals).all()
    # The run must actually move: the kinetic energy exchanges with the potential.
    assert np.ptp(temperatures) > 50.0
    fluctuation = totals.max() - totals.min()
    assert fluctuation <= 1e-4, f"total energy fluctuates by {fluctuation:.2e} eV/atom"
