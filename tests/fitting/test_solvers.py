import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk
from emt_data import label
from scipy.linalg import LinAlgWarning

from mlff import ACEModel, OneBody, PairModel, Stack, StackedCalculator
from mlff.fitting import BLR, QR, RRQR, TruncatedSVD, Weights, assemble, fit
from mlff.fitting.assembly import LinearProblem


def _small_si_stack() -> Stack:
    return Stack(
        [
            OneBody({"Si": -4.5}),
            PairModel(["Si"], cutoff=4.5, n_max=5, repulsion=True),
            ACEModel(["Si"], cutoff=4.0, n_max=4, l_max=2, max_degree={1: 4, 2: 6, 3: 6}),
        ]
    )


def _planted(seed=0, n_configs=12):
    truth = _small_si_stack()
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(truth.length_basis()) * 1e-2
    truth.set_linear_parameters(torch.from_numpy(theta))
    calc = StackedCalculator(truth)
    data = []
    for k in range(n_configs):
        atoms = bulk("Si", "diamond", a=5.43 * rng.uniform(0.97, 1.03), cubic=True)
        atoms.rattle(0.15, seed=k)
        data.append(label(atoms, "rattle", calc=calc))
    return theta, data


@pytest.mark.parametrize("solver", [QR(lambda_=0.0), RRQR(rtol=1e-14), TruncatedSVD(rtol=1e-14)])
def test_planted_parameters_are_recovered(solver):
    theta, data = _planted()
    model = _small_si_stack()
    result = fit(model, data, solver=solver)
    recovered = model.get_linear_parameters().numpy()
    assert np.linalg.norm(recovered - theta) / np.linalg.norm(theta) < 1e-8
    assert result.errors["train"].rmse("forces") < 1e-6


def test_normal_equations_reproduce_planted_labels():
    """Normal equations square the condition number, so θ itself is only recovered to about
    cond²·ε; the predictions must still match the labels."""
    theta, data = _planted()
    model = _small_si_stack()
    result = fit(model, data, solver=QR(lambda_=0.0), normal_equations=True)
    recovered = model.get_linear_parameters().numpy()
    assert np.linalg.norm(recovered - theta) / np.linalg.norm(theta) < 1e-2
    assert result.errors["train"].rmse("forces") < 0.1  # meV/Å
    assert result.errors["train"].rmse("energy") < 0.01  # meV/atom


def test_blr_recovers_planted_noise_level():
    _, data = _planted(seed=3, n_configs=16)
    rng = np.random.default_rng(7)
    sigma = 0.02  # eV/Å on every force component
    for atoms in data:
        atoms.arrays["forces"] = atoms.get_forces() + sigma * rng.standard_normal((len(atoms), 3))
        atoms.calc = None
    problem = assemble(data, _small_si_stack(), weights=Weights(forces=1.0))
    assert problem.n_rows == sum(3 * len(a) for a in data)
    solution = BLR().solve(problem)
    assert solution.noise_std == pytest.approx(sigma, rel=0.2)
    assert solution.info["converged"]
    ard = BLR(ard=True).solve(problem)
    assert ard.noise_std == pytest.approx(sigma, rel=0.2)


def test_blr_posterior_and_committee_on_a_synthetic_problem():
    rng = np.random.default_rng(0)
    n, p = 400, 12
    A = rng.standard_normal((n, p))
    theta = rng.standard_normal(p)
    y = A @ theta + 0.1 * rng.standard_normal(n)
    problem = LinearProblem(
        A,
        y,
        np.ones(n),
        np.zeros(n, int),
        np.zeros(n, np.int8),
        np.zeros(n, np.int32),
        ["x"],
        np.ones(1, int),
    )
    solution = BLR().solve(problem)
    assert np.abs(solution.theta - theta).max() < 0.05
    committee = solution.committee(2000, seed=1)
    assert committee.shape == (2000, p)
    np.testing.assert_allclose(
        committee.mean(0), solution.theta, atol=5 * np.sqrt(np.diag(solution.covariance)).max()
    )
    np.testing.assert_allclose(
        np.cov(committee.T), solution.covariance, atol=0.15 * np.abs(solution.covariance).max()
    )
    with pytest.raises(ValueError, match="posterior covariance"):
        QR().solve(problem).committee(4)


def test_singular_problems_warn_and_never_return_nan():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((50, 4))
    A = np.hstack([A, A[:, :1]])  # a duplicated column
    y = rng.standard_normal(50)
    problem = LinearProblem(
        A,
        y,
        np.ones(50),
        np.zeros(50, int),
        np.zeros(50, np.int8),
        np.zeros(50, np.int32),
        ["x"],
        np.ones(1, int),
    )
    for solver in (QR(lambda_=0.0), RRQR(rtol=1e-10)):
        with pytest.warns(LinAlgWarning):
            solution = solver.solve(problem)
        assert np.all(np.isfinite(solution.theta))
        assert np.abs(A @ solution.theta - y).max() < np.abs(y).max()
    zero = LinearProblem(
        np.zeros((10, 3)),
        np.ones(10),
        np.ones(10),
        np.zeros(10, int),
        np.zeros(10, np.int8),
        np.zeros(10, np.int32),
        ["x"],
        np.ones(1, int),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        for solver in (QR(0.0), RRQR(), TruncatedSVD(), BLR()):
            assert np.all(np.isfinite(solver.solve(zero).theta))


def test_bad_solver_arguments():
    with pytest.raises(ValueError, match="lambda_"):
        QR(lambda_=-1.0)
    rng = np.random.default_rng(0)
    problem = LinearProblem(
        rng.standard_normal((20, 3)),
        rng.standard_normal(20),
        np.ones(20),
        np.zeros(20, int),
        np.zeros(20, np.int8),
        np.zeros(20, np.int32),
        ["x"],
        np.ones(1, int),
    )
    with pytest.raises(ValueError, match="prior must be 3 positive"):
        QR().solve(problem, prior=np.array([1.0, -1.0, 1.0]))
