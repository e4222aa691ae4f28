"""Maxwell–Boltzmann velocities across ASE versions (``thermalize_momenta`` is ASE ≥ 3.29)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ["thermalize"]


def thermalize(atoms: Atoms, temperature_K: float, rng: np.random.Generator | None = None) -> None:
    """Draw momenta from the Maxwell–Boltzmann distribution at ``temperature_K`` (K)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
        return
    thermalize_momenta(atoms, temperature_K, rng=rng)
