"""One MD step (velocity Verlet, 1 fs): the student, and SevenNet-0 when sevenn is installed.

Student: the default stack of ``test_bench_stack`` (OneBody + PairModel + ACEModel, cutoff
5 Å, random parameters) on 64-atom diamond Si, float64, CPU. Teacher: SevenNet-0 on the same
cell. A step is the integrator plus one force call; µs/atom in ``extra_info``. For full MD
benchmarks (ensembles, sizes, memory, drift) use ``mlff bench``.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet
from test_bench_stack import default_stack_calculator
from timing import median_seconds

from mlff.md.ensembles import initialize_velocities


def _si64():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    initialize_velocities(atoms, 300.0, seed=0)
    return atoms


def _bench_step(benchmark, atoms, calc, rounds: int) -> None:
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.run(1)  # the first force call and any one-off set-up
    benchmark.pedantic(dyn.run, args=(1,), rounds=rounds, warmup_rounds=1, iterations=1)
    assert atoms.get_forces().shape == (len(atoms), 3)
    benchmark.extra_info["n_atoms"] = len(atoms)
    benchmark.extra_info["us_per_atom_median"] = median_seconds(benchmark) / len(atoms) * 1e6
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()


def test_md_step_student(benchmark):
    atoms = _si64()
    _bench_step(benchmark, atoms, default_stack_calculator(atoms), rounds=20)


@pytest.mark.skipif(importlib.util.find_spec("sevenn") is None, reason="needs the sevennet extra")
def test_md_step_sevennet(benchmark):
    from mlff.distill.teachers import get_teacher

    _bench_step(benchmark, _si64(), get_teacher("sevennet-0"), rounds=5)
