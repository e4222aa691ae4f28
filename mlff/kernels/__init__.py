"""Compiled (numba) CPU kernels, one module per model, each fed by named, typed tables
(NamedTuples) that its model publishes through ``kernel_tables``. Nothing here reads a model:
the tables are the whole interface, and tests compare every kernel with its model's torch
closed form."""

from mlff.kernels.ace import ACETables, ace_energies_and_grads
from mlff.kernels.pair import PairTables, pair_energies_and_grads
from mlff.kernels.radial import RadialTables
from mlff.kernels.scatter import scatter_forces

__all__ = [
    "ACETables",
    "PairTables",
    "RadialTables",
    "ace_energies_and_grads",
    "pair_energies_and_grads",
    "scatter_forces",
]
