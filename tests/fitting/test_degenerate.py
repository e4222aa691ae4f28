"""Degenerate fitting problems: rank deficiency, fewer rows than parameters, nothing to fit,
NaN/inf in the problem. Every solver must warn or refuse, never return garbage or zeros."""

import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from emt_data import label
from scipy.linalg import LinAlgWarning

from mlff import ACEModel, OneBody, PairModel, SiteCalculator, Stack
from mlff.fitting import (
    BLR,
    QR,
    RRQR,
    NormalEquations,
    TruncatedSVD,
    Weights,
    assemble,
    fit,
)
from mlff.fitting.assembly import LinearProblem

ALL_SOLVERS = [QR(0.0), QR(), RRQR(), TruncatedSVD(), BLR(), BLR(ard=True)]


def _default_stack() -> Stack:
    return Stack([OneBody({"Cu": 0.0}), PairModel(["Cu"], repulsion=True), ACEModel(["Cu"])])


def _ev_curve(repeat: int = 1, energy_only: bool = False) -> list:
    """Seven perfect fcc Cu crystals across a = 3.45–3.75 Å, EMT-labelled: forces vanish by
    symmetry and many ACE functions (odd l, …) are rounding noise (~1e-30) on every cell."""
    data = []
    for a in np.linspace(3.45, 3.75, 7):
        atoms = label(bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat), "ev")
        if energy_only:
            atoms.info["energy"] = atoms.get_potential_energy()
            atoms.calc = None
        data.append(atoms)
    return data


def _rattled_error(model) -> tuple[float, float]:
    """(model − EMT, EMT rattled − EMT perfect) in eV/atom for a 4-atom cell rattled by 0.05 Å.

    The E–V data say nothing about displacements, so no fit can be expected to do better than
    the perfect crystal's energy: its error is then the rattling energy itself.
    """
    perfect = bulk("Cu", "fcc", a=3.6, cubic=True)
    perfect.calc = EMT()
    rattled = perfect.copy()
    rattled.rattle(0.05, seed=1)
    rattled.calc = EMT()
    reference = rattled.get_potential_energy() / len(rattled)
    rattling = reference - perfect.get_potential_energy() / len(perfect)
    probe = rattled.copy()
    probe.calc = SiteCalculator(model)
    return probe.get_potential_energy() / len(probe) - reference, rattling


def _fit(data, solver, **kwargs):
    model = _default_stack()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(model, data, solver=solver, **kwargs)
    messages = [str(w.message) for w in caught if issubclass(w.category, LinAlgWarning)]
    return model, result, messages


@pytest.fixture(scope="module")
def ev_qr():
    """QR with its default ridge on the E–V data: the sane reference."""
    model, result, _ = _fit(_ev_curve(), QR())
    return result.solution.theta, _rattled_error(model)[0]


@pytest.mark.parametrize("normal_equations", [False, True])
def test_blr_on_an_ev_curve_of_perfect_crystals_is_sane_and_warns(ev_qr, normal_equations):
    data = _ev_curve()  # 7 × (1 + 12 + 6) = 133 rows for 392 parameters
    model, result, messages = _fit(data, BLR(), normal_equations=normal_equations)
    theta = result.solution.theta
    qr_theta, qr_error = ev_qr
    # Before: |θ| ~ 1e15–1e22 and ~1e10 eV/atom on the rattled crystal, "converged", no warning.
    assert np.linalg.norm(theta) < 10 * np.linalg.norm(qr_theta)
    error, rattling = _rattled_error(model)
    assert abs(error) <= 2 * abs(rattling)  # no worse than twice "predict the perfect crystal"
    assert abs(error) <= 2 * abs(qr_error) + 0.01
    rank = result.solution.info["rank"]
    assert 0 < rank < 50
    assert any(f"determine only {rank} of 392 directions (rank {rank})" in m for m in messages), (
        messages
    )
    assert any("underdetermined: 133 rows for 392 parameters" in m for m in messages), messages


def test_blr_rows_and_normal_equations_cut_the_same_directions():
    data = _ev_curve()
    stack = _default_stack()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        rows = BLR().solve(assemble(data, stack))
        normal = BLR().solve(assemble(data, stack, normal_equations=True))
    assert rows.info["rank"] == normal.info["rank"]
    np.testing.assert_allclose(normal.theta, rows.theta, atol=1e-4 * np.abs(rows.theta).max())


def test_blr_ignores_columns_of_rounding_noise_with_more_rows_than_parameters():
    """2×2×2 cells: 721 rows ≥ 392 parameters, yet ~250 columns are ~1e-30 on every cell."""
    data = _ev_curve(repeat=2)
    model, result, messages = _fit(data, BLR())
    _, qr_result, _ = _fit(data, QR())
    assert np.linalg.norm(result.solution.theta) < 10 * np.linalg.norm(qr_result.solution.theta)
    error, rattling = _rattled_error(model)
    assert abs(error) <= 2 * abs(rattling)
    rank = result.solution.info["rank"]
    assert rank < 50 and result.solution.info["converged"]
    # Converged, with more rows than parameters, but the prior sets most of the model: say so.
    assert any(f"determine only {rank} of 392 directions (rank {rank})" in m for m in messages), (
        messages
    )
    assert not any("underdetermined" in m for m in messages), messages


def test_energy_only_ev_curve_is_underdetermined_but_sane():
    data = _ev_curve(energy_only=True)  # 7 rows for 392 parameters
    spread = 1e3 * np.ptp([atoms.info["energy"] / len(atoms) for atoms in data])  # 75 meV/atom
    for solver in (BLR(), BLR(ard=True, max_iter=100), QR(), RRQR(), TruncatedSVD()):
        model, result, messages = _fit(data, solver)
        assert any("7 rows for 392 parameters" in m for m in messages), (solver, messages)
        error, rattling = _rattled_error(model)
        assert abs(error) <= 2 * abs(rattling), solver
        # All but ARD interpolate the seven energies; ARD's evidence may call part of them
        # noise (seven rows are little to learn 392 precisions from), never more than all.
        limit = 0.5 * spread if isinstance(solver, BLR) and solver.ard else 5.0
        assert result.errors["train"].rmse("energy") < limit, solver  # meV/atom


def _problem(A, y, w=None) -> LinearProblem:
    n = len(y)
    w = np.ones(n) if w is None else w
    return LinearProblem(
        A, y, w, np.arange(n), np.zeros(n, np.int8), np.zeros(n, np.int32), ["x"], np.ones(n, int)
    )


@pytest.mark.parametrize("solver", ALL_SOLVERS, ids=repr)
def test_fewer_rows_than_parameters_warn_and_fit(solver):
    """20 rows for 60 parameters; the rows span 8 directions, so the targets are clearly signal
    (with a full-rank Gaussian A, A Aᵀ ≈ 60 I and the evidence cannot tell signal from noise)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 8)) @ rng.standard_normal((8, 60))
    y = A @ rng.standard_normal(60) + 1e-3 * rng.standard_normal(20)
    with pytest.warns(LinAlgWarning, match="20 rows for 60 parameters"):
        solution = solver.solve(_problem(A, y))
    assert np.all(np.isfinite(solution.theta))
    if not isinstance(solver, RRQR):  # RRQR gives a basic, not a least-norm, solution
        least_norm = np.linalg.lstsq(A, y, rcond=None)[0]
        assert np.linalg.norm(solution.theta) < 3 * np.linalg.norm(least_norm)
    assert np.abs(A @ solution.theta - y).max() < 0.01 * np.abs(y).max()
    if not isinstance(solver, (RRQR, TruncatedSVD)):  # these need the rows
        normal = NormalEquations(A.T @ A, A.T @ y, float(y @ y), len(y))
        with pytest.warns(LinAlgWarning, match="20 rows for 60 parameters"):
            assert np.all(np.isfinite(solver.solve(normal).theta))


@pytest.mark.parametrize(
    "solver", [BLR(), BLR(ard=True), RRQR(), TruncatedSVD(), QR(0.0)], ids=repr
)
def test_columns_of_rounding_noise_get_no_weight(solver):
    """A function that vanishes on every configuration (values ~1e-30) must not be scaled up
    into a unit column and fitted with a coefficient of ~1e15."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((200, 6))
    A[:, 2] = 1e-30 * rng.standard_normal(200)
    y = A @ np.array([1.0, -2.0, 0.0, 0.5, 3.0, -1.0]) + 1e-15 * rng.standard_normal(200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        solution = solver.solve(_problem(A, y))
    assert abs(solution.theta[2]) < 1e3
    np.testing.assert_allclose(np.delete(solution.theta, 2), [1.0, -2.0, 0.5, 3.0, -1.0], atol=1e-6)


def test_noise_free_data_reach_the_noise_floor_and_are_not_converged():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((100, 5))
    y = A @ rng.standard_normal(5)  # exact: the evidence maximum is at β → ∞
    for solver in (BLR(), BLR(ard=True)):
        with pytest.warns(LinAlgWarning, match="noise precision β reached its bound"):
            solution = solver.solve(_problem(A, y))
        assert not solution.info["converged"] and solution.info["noise_at_floor"]
        rms = np.sqrt(np.mean(y**2))
        assert solution.noise_std == pytest.approx(1e-6 * rms, rel=1e-3)
        np.testing.assert_allclose(A @ solution.theta, y, atol=1e-6 * rms)


def _cu(labelled: bool = True):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    return label(atoms, "bulk") if labelled else atoms


@pytest.mark.parametrize(
    ("data", "weights", "match"),
    [
        (
            lambda: [_cu(False), _cu(False)],
            None,
            r"no configuration \(of 2\) has an energy, forces or stress label",
        ),
        (
            lambda: [_cu(), _cu()],
            Weights(energy=0, forces=0, virial=0),
            r"every labelled row \(2 energy, 24 forces, 12 virial\) has weight zero "
            r"under Weights\(energy=0",
        ),
        (
            lambda: [_cu()],
            Weights(energy=0, forces=0, virial=1, per_config_type={"bulk": {"virial": 0}}),
            r"every labelled row .* has weight zero under Weights\(.*per_config_type=\{'bulk'",
        ),
    ],
    ids=["no-labels", "zero-weights", "zero-by-config-type"],
)
@pytest.mark.parametrize("solver", [QR(), BLR(), TruncatedSVD()], ids=repr)
def test_nothing_to_fit_is_refused_before_solving(data, weights, match, solver):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="nothing to fit: " + match):
            fit(_default_stack(), data(), solver=solver, weights=weights)


@pytest.mark.parametrize("solver", ALL_SOLVERS + [RRQR(1e-14)], ids=repr)
def test_solvers_refuse_empty_or_unweighted_problems(solver):
    rng = np.random.default_rng(3)
    A, y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="nothing to fit: the problem has no rows"):
            solver.solve(_problem(np.zeros((0, 3)), np.zeros(0)))
        with pytest.raises(
            ValueError, match="nothing to fit: every one of the 10 rows has weight zero"
        ):
            solver.solve(_problem(A, y, np.zeros(10)))
        if not isinstance(solver, (RRQR, TruncatedSVD)):
            with pytest.raises(
                ValueError,
                match="nothing to fit: the normal equations were accumulated from 0 rows",
            ):
                solver.solve(NormalEquations(np.zeros((3, 3)), np.zeros(3), 0.0, 0))


@pytest.mark.parametrize("solver", ALL_SOLVERS, ids=repr)
@pytest.mark.parametrize("where", ["A", "y", "w"])
def test_solvers_refuse_nan_or_inf_in_the_problem(solver, where):
    rng = np.random.default_rng(4)
    A, y, w = rng.standard_normal((30, 4)), rng.standard_normal(30), np.ones(30)
    {"A": A[7], "y": y[7:8], "w": w[7:8]}[where][0] = np.inf if where == "w" else np.nan
    name = {"A": "the design matrix A", "y": "the targets y", "w": "the weights w"}[where]
    with pytest.raises(
        ValueError,
        match=rf"{name} has 1 NaN/inf entries \(the first in row 7 \(configuration 7, energy\)\)",
    ):
        solver.solve(_problem(A, y, w))
    if not isinstance(solver, (RRQR, TruncatedSVD)):
        with pytest.raises(ValueError, match="normal equations' AᵀW²A contains NaN/inf"):
            solver.solve(NormalEquations(np.full((4, 4), np.nan), np.zeros(4), 1.0, 30))
