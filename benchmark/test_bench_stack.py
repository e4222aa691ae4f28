"""Energy + forces + stress of the default stack on diamond Si (µs/atom in extra_info).

Default stack: OneBody + PairModel(repulsion) + ACEModel(["Si"], cutoff=5.0), float64, CPU, on
the default backend (numba kernels) and on the torch backend.
Run with ``make bench``; the JSON lands in ``benchmark/results/bench.json``.
"""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk
from timing import median_seconds

from mlff import ACEModel, OneBody, PairModel, StackedCalculator
from mlff.testing import random_linear_parameters


def default_stack_calculator(atoms, backend: str = "auto") -> StackedCalculator:
    pair = PairModel(["Si"], cutoff=5.0, repulsion=True)
    ace = ACEModel(["Si"], cutoff=5.0)
    random_linear_parameters(pair, atoms, energy_scale=0.5, seed=1)
    random_linear_parameters(ace, atoms, energy_scale=0.5, seed=2)
    return StackedCalculator([OneBody({"Si": -4.0}), pair, ace], backend=backend)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("repeat", [2, 4, 6], ids=["64-atoms", "512-atoms", "1728-atoms"])
def test_energy_forces_stress(benchmark, repeat, backend):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    atoms.rattle(0.02, seed=0)
    calc = default_stack_calculator(atoms, backend)
    properties = ["energy", "forces", "stress"]

    def call():
        calc.calculate(atoms, properties, ["positions"])
        return calc.results

    results = benchmark.pedantic(call, rounds=7 if repeat < 6 else 3, warmup_rounds=1, iterations=1)
    assert results["forces"].shape == (len(atoms), 3)
    median = median_seconds(benchmark)
    benchmark.extra_info["n_atoms"] = len(atoms)
    benchmark.extra_info["us_per_atom_median"] = median / len(atoms) * 1e6
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["backend"] = backend
