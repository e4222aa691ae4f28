"""Assembly and solve times of the least-squares fit.

* assembling 1,000 rattled diamond-Si configurations of 64 atoms (energy, forces, stress) for
  the default stack (OneBody + PairModel + ACEModel, 392 parameters), normal-equations mode,
  in 1 and 2 worker processes;
* solving QR and BLR as the number of parameters P grows.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from timing import median_seconds

from mlff import ACEModel, OneBody, PairModel, Stack
from mlff.fitting import BLR, QR, assemble
from mlff.fitting.assembly import LinearProblem


def _si_configs(n: int) -> list:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        atoms = bulk("Si", "diamond", a=5.43 * rng.uniform(0.97, 1.03), cubic=True).repeat(2)
        atoms.rattle(0.08, seed=k)
        # Labels only need to exist: assembly cost does not depend on their values.
        atoms.calc = SinglePointCalculator(
            atoms, energy=-4.0 * len(atoms), forces=np.zeros((len(atoms), 3)), stress=np.zeros(6)
        )
        out.append(atoms)
    return out


def _default_stack() -> Stack:
    return Stack(
        [
            OneBody({"Si": -4.0}),
            PairModel(["Si"], cutoff=5.0, repulsion=True),
            ACEModel(["Si"], cutoff=5.0),
        ]
    )


@pytest.mark.parametrize("n_workers", [1, 2])
def test_assemble_1000_si64(benchmark, n_workers):
    n = 8 if benchmark.disabled else 1000  # a smoke test assembles a few
    configs = _si_configs(n)
    stack = _default_stack()
    result = benchmark.pedantic(
        lambda: assemble(configs, stack, normal_equations=True, n_workers=n_workers),
        rounds=1,
        iterations=1,
    )
    assert result.n_rows == n * (1 + 3 * 64 + 6)
    benchmark.extra_info["configs"] = n
    benchmark.extra_info["parameters"] = stack.length_basis()
    benchmark.extra_info["ms_per_config"] = median_seconds(benchmark) / n * 1e3


@pytest.mark.parametrize("n_params", [100, 400, 1600])
@pytest.mark.parametrize("solver", [QR(1e-8), BLR()], ids=["QR", "BLR"])
def test_solve_time_vs_parameters(benchmark, n_params, solver):
    rng = np.random.default_rng(0)
    n_rows = 10 * n_params
    A = rng.standard_normal((n_rows, n_params))
    y = A @ rng.standard_normal(n_params) + 0.01 * rng.standard_normal(n_rows)
    problem = LinearProblem(
        A,
        y,
        np.ones(n_rows),
        np.zeros(n_rows, int),
        np.zeros(n_rows, np.int8),
        np.zeros(n_rows, np.int32),
        ["x"],
        np.ones(1, int),
    )
    solution = benchmark.pedantic(lambda: solver.solve(problem), rounds=3, iterations=1)
    assert np.all(np.isfinite(solution.theta))
    benchmark.extra_info["rows"] = n_rows
