"""Least-squares solvers on numpy/scipy: ridge QR, rank-revealing QR, truncated SVD and
Bayesian linear regression with evidence maximisation (optionally ARD).

Every solver minimises Σ_rows w² (A θ − y)² (+ its regulariser) and accepts either a
:class:`~mlff.fitting.assembly.LinearProblem` or, where noted, accumulated
:class:`~mlff.fitting.assembly.NormalEquations`. An optional diagonal prior Γ (P,) scales the
regulariser per parameter: the penalty is λ Σ_k (Γ_k θ_k)². A problem that is singular,
ill-posed or has fewer rows than parameters ends in a ``LinAlgWarning``, never in NaN
parameters. A problem with no rows, with every weight zero, or with NaN/inf in its rows,
targets or weights raises ``ValueError`` before any work.

All regularisers act on column-scaled parameters: Γ_k is multiplied by the RMS of column k over
the weighted rows, so λ and the priors mean the same whatever the basis normalisation. A column
whose RMS is below √ε of the largest is rounding noise (a function that vanishes by symmetry on
every configuration, say): it is not scaled up to unit size but given the median scale of the
others, so it stays negligible and the solvers leave its direction to the regulariser.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg import LinAlgWarning

from mlff.fitting.assembly import LinearProblem, NormalEquations

__all__ = ["BLR", "QR", "RRQR", "Solution", "TruncatedSVD"]

_EPS = float(np.finfo(float).eps)
# A column below this fraction of the largest column's RMS is rounding noise, not data.
_COLUMN_RTOL = float(np.sqrt(_EPS))
# BLR's noise std stops at this fraction of the RMS weighted target (and the fit is reported
# as degenerate): well above what either branch resolves (the normal equations' misfit is only
# known to ~√(P·ε) ≈ 3e-7 for P = 400) and far below real label noise (DFT: ~1e-3).
_NOISE_FLOOR = 1e-6
# BLR warns when its data determine fewer than this fraction of the directions.
_MOSTLY_DATA = 0.5


@dataclass
class Solution:
    """θ (P,), and for BLR the posterior covariance (P, P), noise and prior precisions."""

    theta: np.ndarray
    covariance: np.ndarray | None = None
    noise_std: float | None = None
    prior_precision: np.ndarray | float | None = None
    info: dict = field(default_factory=dict)

    def committee(self, size: int, seed: int = 0) -> np.ndarray:
        """``size`` parameter sets drawn from the posterior: (size, P)."""
        if self.covariance is None:
            raise ValueError("a committee needs a posterior covariance; fit with BLR()")
        if size < 2:
            raise ValueError(f"a committee needs at least 2 members, got {size}")
        rng = np.random.default_rng(seed)
        vals, vecs = np.linalg.eigh(0.5 * (self.covariance + self.covariance.T))
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))
        return self.theta + rng.standard_normal((size, len(self.theta))) @ root.T


def _weighted(problem: LinearProblem) -> tuple[np.ndarray, np.ndarray]:
    return problem.A * problem.w[:, None], problem.y * problem.w


_PROPERTY_NAMES = ("energy", "forces", "virial")


def _row_name(problem: LinearProblem, row: int) -> str:
    """'row r (configuration c, forces)' for an error message."""
    try:
        config, prop = int(problem.config[row]), _PROPERTY_NAMES[int(problem.prop[row])]
        return f"row {row} (configuration {config}, {prop})"
    except (IndexError, TypeError, ValueError):
        return f"row {row}"


def _check_finite_rows(problem: LinearProblem) -> None:
    for name, values in (
        ("the design matrix A", problem.A),
        ("the targets y", problem.y),
        ("the weights w", problem.w),
    ):
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(
                f"{name} has {int(bad.sum())} NaN/inf entries "
                f"(the first in {_row_name(problem, row)}); "
                "every entry must be finite: check that configuration's labels and geometry"
            )


def _check_problem(problem) -> None:
    """Refuse, before any work, a problem with nothing to fit or with NaN/inf in it."""
    if isinstance(problem, NormalEquations):
        for name, values in (
            ("AᵀW²A", problem.AtA),
            ("AᵀW²y", problem.Aty),
            ("yᵀW²y", problem.yty),
        ):
            if not np.all(np.isfinite(values)):
                raise ValueError(
                    f"the normal equations' {name} contains NaN/inf; every entry must be finite"
                )
        if problem.n_rows == 0:
            raise ValueError(
                "nothing to fit: the normal equations were accumulated from 0 rows (no labels)"
            )
        if not np.any(problem.AtA) and problem.yty == 0:
            raise ValueError(
                f"nothing to fit: the normal equations of {problem.n_rows} rows are all zero "
                "(every row has weight zero?); "
                "give at least one labelled property a positive weight"
            )
        return
    if problem.n_rows == 0:
        raise ValueError(
            "nothing to fit: the problem has no rows "
            "(no configuration has an energy, forces or stress label)"
        )
    _check_finite_rows(problem)
    if not np.any(problem.w):
        raise ValueError(
            f"nothing to fit: every one of the {problem.n_rows} rows has weight zero; "
            "give at least one labelled property a positive weight"
        )


def _column_scale(problem) -> np.ndarray:
    """RMS s_k (P,) of each weighted column; numerically zero columns get the others' median.

    A column below √ε of the largest is rounding noise (e.g. an l = 1 invariant on perfect fcc
    crystals, ~1e-30): scaled to unit RMS it would look like data and take a huge coefficient.
    """
    if isinstance(problem, NormalEquations):
        sq = np.clip(np.diag(problem.AtA), 0.0, None) / max(problem.n_rows, 1)
    else:
        sq = np.mean((problem.A * problem.w[:, None]) ** 2, axis=0)
    scale = np.sqrt(sq)
    top = float(scale.max()) if scale.size else 0.0
    resolved = scale > _COLUMN_RTOL * top
    scale[~resolved] = float(np.median(scale[resolved])) if resolved.any() else 1.0
    return scale


def _prior(prior, problem) -> np.ndarray:
    """Γ_k · s_k: the user's prior times each column's RMS s_k over the weighted rows.

    Scaling by s_k makes every regulariser act on a function's *contribution* rather than on
    its raw coefficient, so the result does not depend on how the basis is normalised
    (ACE products span orders of magnitude). See :func:`_column_scale` for zero columns.
    """
    p = problem.n_params
    if prior is None:
        prior = np.ones(p)
    else:
        prior = np.asarray(prior, dtype=float)
        if prior.shape != (p,) or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
            raise ValueError(
                f"prior must be {p} positive finite numbers (one per parameter), "
                f"got shape {prior.shape}"
            )
    return prior * _column_scale(problem)


def _scaled_rows(problem, prior, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted rows with Γ-scaled columns, (W A Γ⁻¹, W y, Γ), for solvers that need the rows."""
    if isinstance(problem, NormalEquations):
        raise TypeError(f"{name} needs the rows; assemble without normal_equations or use QR/BLR")
    gamma = _prior(prior, problem)
    A, y = _weighted(problem)
    return A / gamma, y, gamma


def _rows_note(n_rows: int, n_params: int) -> str:
    """'; underdetermined: 7 rows for 392 parameters' when there are fewer rows than parameters."""
    return (
        f"; the problem is underdetermined: {n_rows} rows for {n_params} parameters"
        if n_rows < n_params
        else ""
    )


def _finite(theta: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(theta)):
        warnings.warn(
            f"{name}: the solution was not finite; returning zeros", LinAlgWarning, stacklevel=3
        )
        return np.zeros_like(theta)
    return theta


@dataclass
class QR:
    """Ridge regression by QR of the augmented system [W A; √λ Γ] θ = [W y; 0].

    With ``lambda_=0`` and a rank-deficient A (or fewer rows than parameters), warns and
    returns the least-norm solution. Accepts normal equations too (solved by Cholesky of
    AᵀW²A + λΓ²).
    """

    lambda_: float = 1e-6

    def __post_init__(self):
        if not (np.isfinite(self.lambda_) and self.lambda_ >= 0):
            raise ValueError(f"lambda_ must be a finite number >= 0, got {self.lambda_!r}")

    def solve(self, problem, prior=None) -> Solution:
        _check_problem(problem)
        gamma = _prior(prior, problem)
        if self.lambda_ > 0 and problem.n_rows < problem.n_params:
            warnings.warn(
                f"QR: {_rows_note(problem.n_rows, problem.n_params)[2:]}; "
                f"the ridge (lambda_={self.lambda_:g}) "
                "decides the directions the rows leave open",
                LinAlgWarning,
                stacklevel=2,
            )
        if isinstance(problem, NormalEquations):
            # Jacobi scaling first: the normal equations square the condition number.
            d = np.sqrt(np.diag(problem.AtA))
            d[~(d > 0)] = 1.0
            lhs = problem.AtA / d[:, None] / d[None, :] + self.lambda_ * np.diag((gamma / d) ** 2)
            rhs = problem.Aty / d
            try:
                c = scipy.linalg.cho_factor(lhs)
                z = scipy.linalg.cho_solve(c, rhs)
            except np.linalg.LinAlgError:
                warnings.warn(
                    "QR: normal equations are singular"
                    f"{_rows_note(problem.n_rows, problem.n_params)}; "
                    "using least squares (raise lambda_ for a unique solution)",
                    LinAlgWarning,
                    stacklevel=2,
                )
                z = scipy.linalg.lstsq(lhs, rhs)[0]
            return Solution(_finite(z / d, "QR"), info={"lambda": self.lambda_})
        A, y = _weighted(problem)
        if self.lambda_ > 0:
            A = np.vstack([A, np.sqrt(self.lambda_) * np.diag(gamma)])
            y = np.concatenate([y, np.zeros(problem.n_params)])
        q, r = scipy.linalg.qr(A, mode="economic")
        diag = np.abs(np.diag(r))
        if A.shape[0] < A.shape[1] or diag.min() <= 1e-13 * diag.max():
            warnings.warn(
                "QR: the problem is rank deficient"
                f"{_rows_note(problem.n_rows, problem.n_params)}; returning "
                "the least-norm solution (raise lambda_ or use RRQR)",
                LinAlgWarning,
                stacklevel=2,
            )
            theta = scipy.linalg.lstsq(A, y)[0]
        else:
            theta = scipy.linalg.solve_triangular(r, q.T @ y)
        return Solution(_finite(theta, "QR"), info={"lambda": self.lambda_})


@dataclass
class RRQR:
    """Rank-revealing QR: drops directions with |R_kk| < rtol · |R_00| (in the Γ-scaled basis)."""

    rtol: float = 1e-12

    def solve(self, problem, prior=None) -> Solution:
        _check_problem(problem)
        A, y, gamma = _scaled_rows(problem, prior, "RRQR")
        q, r, piv = scipy.linalg.qr(A, mode="economic", pivoting=True)
        diag = np.abs(np.diag(r))
        rank = int(np.sum(diag > self.rtol * diag[0])) if diag.size and diag[0] > 0 else 0
        if rank < problem.n_params:
            note = _rows_note(problem.n_rows, problem.n_params)
            warnings.warn(
                f"RRQR: kept {rank} of {problem.n_params} directions{note}",
                LinAlgWarning,
                stacklevel=2,
            )
        z = np.zeros(problem.n_params)
        if rank:
            z[piv[:rank]] = scipy.linalg.solve_triangular(r[:rank, :rank], (q.T @ y)[:rank])
        return Solution(_finite(z / gamma, "RRQR"), info={"rank": rank})


@dataclass
class TruncatedSVD:
    """Least squares keeping singular values above rtol · σ_max (in the Γ-scaled basis)."""

    rtol: float = 1e-10

    def solve(self, problem, prior=None) -> Solution:
        _check_problem(problem)
        A, y, gamma = _scaled_rows(problem, prior, "TruncatedSVD")
        u, s, vt = scipy.linalg.svd(A, full_matrices=False)
        keep = s > self.rtol * (s[0] if s.size else 0.0)
        rank = int(keep.sum())
        if rank < problem.n_params:
            note = _rows_note(problem.n_rows, problem.n_params)
            warnings.warn(
                f"TruncatedSVD: kept {rank} of {problem.n_params} directions{note}",
                LinAlgWarning,
                stacklevel=2,
            )
        z = vt[keep].T @ ((u[:, keep].T @ y) / s[keep])
        return Solution(_finite(z / gamma, "TruncatedSVD"), info={"rank": rank})


@dataclass
class BLR:
    """Bayesian linear regression: θ ~ N(0, (α Γ²)⁻¹), noise ~ N(0, β⁻¹) on weighted rows.

    α and β maximise the evidence: for the isotropic prior by direct optimisation of the log
    evidence over (log α, log β) on the spectrum of the Γ-scaled design matrix (an SVD when the
    rows are available, an eigendecomposition of the normal equations otherwise); with
    ``ard=True`` every parameter has its own α_k (MacKay's fixed-point updates). Gives the
    posterior covariance, the noise level ``noise_std = β^(-1/2)`` (in weighted-row units) and
    a committee by sampling.

    Directions whose squared singular value is below ``rtol`` × the largest are outside the
    data's range, in both branches alike (1e-14 is what an eigendecomposition of AᵀA resolves
    in float64): the data say nothing there, so the prior alone decides them. ``noise_std``
    stops at 1e-6 × the RMS weighted target: labels fitted that closely (noise-free data that
    few directions explain) have no evidence maximum, so the fit stops there, is not converged
    and warns, as do fits with fewer rows than parameters. ``info`` reports ``rank``
    (directions the data determine), ``converged`` and ``noise_at_floor``.
    """

    ard: bool = False
    max_iter: int = 1000
    tol: float = 1e-7
    rtol: float = 1e-14

    def __post_init__(self):
        if not (np.isfinite(self.rtol) and 0 <= self.rtol < 1):
            raise ValueError(f"rtol must be a number in [0, 1), got {self.rtol!r}")

    def solve(self, problem, prior=None) -> Solution:
        _check_problem(problem)
        gamma = _prior(prior, problem)
        spec = _spectrum(problem, gamma, self.rtol)
        if self.ard:
            return self._solve_ard(gamma, spec)
        opt = _maximise_evidence(spec)
        mean_z, cov_z = _posterior(spec, opt.alpha, opt.beta)
        effective = float(np.sum(opt.beta * spec.lam / (opt.beta * spec.lam + opt.alpha)))
        _warn_degenerate("BLR", spec, opt, "the evidence maximisation did not converge")
        return Solution(
            _finite(mean_z / gamma, "BLR"),
            covariance=cov_z / gamma[:, None] / gamma[None, :],
            noise_std=opt.noise_std,
            prior_precision=float(opt.alpha),
            info={
                "effective_parameters": effective,
                "log_evidence": log_evidence(spec, opt.log_alpha, opt.log_beta),
                **opt.info(spec),
            },
        )

    def _solve_ard(self, gamma, spec: _Spectrum) -> Solution:
        p = len(gamma)
        ata = (spec.vecs * spec.lam) @ spec.vecs.T
        aty = spec.vecs @ (np.sqrt(spec.lam) * spec.b)
        yty = spec.r_perp + float(spec.b @ spec.b)
        scale = max(float(spec.lam.max()), 1e-300)
        start = _maximise_evidence(spec)
        alpha, beta = np.full(p, start.alpha), start.beta
        beta_max = np.exp(_log_beta_max(spec))
        converged, singular, n_iter = False, 0, 0
        for _ in range(self.max_iter):
            n_iter += 1
            cov, ok = _ard_covariance(ata, alpha, beta)
            singular += not ok
            mean = beta * cov @ aty
            gamma_k = np.clip(1.0 - alpha * np.diag(cov), 0.0, 1.0)
            # Where the data determine nothing of θ_k (γ_k ≈ 0) the evidence is flat in α_k:
            # keep it, rather than let 0/0 collapse the prior to infinite width.
            update = np.clip(gamma_k / np.maximum(mean**2, 1e-300), 1e-12, 1e12 * scale)
            new_alpha = np.where(gamma_k > 1e-8, update, alpha)
            effective = float(np.sum(gamma_k))
            residual = max(yty - 2 * mean @ aty + mean @ ata @ mean, 1e-300)
            new_beta = min(max(spec.n_rows - effective, 1e-12) / residual, beta_max)
            ratio = np.abs(np.log(new_alpha / alpha))
            # ARD drives irrelevant α_k to the cap; those have converged in effect.
            active = new_alpha < 1e11 * scale
            change = (ratio[active].max() if active.any() else 0.0) + abs(np.log(new_beta / beta))
            alpha, beta = new_alpha, new_beta
            if change < self.tol:
                converged = True
                break
        at_floor = bool(beta >= beta_max * (1 - 1e-9))
        opt = _Optimum(
            float(np.log(alpha.mean())), float(np.log(beta)), converged and not at_floor, at_floor
        )
        cov, ok = _ard_covariance(ata, alpha, beta)
        singular += not ok
        if singular:
            warnings.warn(
                "BLR(ard): the posterior precision was numerically singular in "
                f"{singular} of {n_iter + 1} "
                "inversions; used a pseudo-inverse there",
                LinAlgWarning,
                stacklevel=3,
            )
        _warn_degenerate(
            "BLR(ard)",
            spec,
            opt,
            f"the MacKay updates did not converge in {self.max_iter} iterations",
            stacklevel=4,
        )
        mean = beta * cov @ aty
        return Solution(
            _finite(mean / gamma, "BLR"),
            covariance=cov / gamma[:, None] / gamma[None, :],
            noise_std=opt.noise_std,
            prior_precision=alpha,
            info={"iterations": n_iter, "effective_parameters": effective, **opt.info(spec)},
        )


@dataclass
class _Spectrum:
    """The Γ-scaled weighted design matrix M = W A Γ⁻¹ seen through its SVD, cut to the data's
    range.

    lam (P,): squared singular values, 0 outside the range; vecs (P, P): right singular vectors
    as columns; b (P,): y along the left singular vectors, 0 outside the range; r_perp: |W y|²
    outside the range; yty: |W y|².
    """

    lam: np.ndarray
    vecs: np.ndarray
    b: np.ndarray
    r_perp: float
    yty: float
    n_rows: int

    @property
    def rank(self) -> int:
        return int(np.count_nonzero(self.lam))


def _data_range(lam: np.ndarray, rtol: float) -> np.ndarray:
    """Which directions the data determine: λ_k > rtol · λ_max (the one rule for both branches)."""
    top = float(lam.max()) if lam.size else 0.0
    return lam > rtol * top if top > 0 else np.zeros(lam.shape, dtype=bool)


def _spectrum(problem, gamma, rtol: float) -> _Spectrum:
    """Spectrum of M = W A Γ⁻¹: an SVD of the rows, or an eigendecomposition of MᵀM.

    Both cut the directions outside :func:`_data_range` the same way (λ = 0 and b = 0 there,
    their part of y counted in r_perp), so rows and normal equations give the same fit.
    """
    if isinstance(problem, NormalEquations):
        ata = problem.AtA / gamma[:, None] / gamma[None, :]
        lam, vecs = np.linalg.eigh(0.5 * (ata + ata.T))
        lam = np.clip(lam, 0.0, None)
        keep = _data_range(lam, rtol)
        proj = vecs.T @ (problem.Aty / gamma)
        b = np.where(keep, proj / np.sqrt(np.where(keep, lam, 1.0)), 0.0)
        r_perp = max(problem.yty - float(b @ b), 0.0)
        return _Spectrum(
            np.where(keep, lam, 0.0), vecs, b, r_perp, float(problem.yty), problem.n_rows
        )
    A, y = _weighted(problem)
    p = problem.n_params
    # Fewer rows than parameters: the full V completes the basis with the null space.
    u, sv, vt = scipy.linalg.svd(A / gamma, full_matrices=problem.n_rows < p)
    k = len(sv)
    lam, b = np.zeros(p), np.zeros(p)
    lam[:k] = sv**2
    b[:k] = u[:, :k].T @ y
    keep = _data_range(lam, rtol)
    b[~keep] = 0.0
    perp = y - u[:, :k] @ b[:k]
    return _Spectrum(
        np.where(keep, lam, 0.0), vt.T, b, float(perp @ perp), float(y @ y), problem.n_rows
    )


def _posterior(spec: _Spectrum, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean (P,) and covariance (P, P) of the whitened parameters: 0 and 1/α outside the range."""
    denom = beta * spec.lam + alpha
    mean = spec.vecs @ (beta * np.sqrt(spec.lam) * spec.b / denom)
    cov = (spec.vecs / denom) @ spec.vecs.T
    return mean, cov


@dataclass
class _Optimum:
    """Where the evidence maximisation ended, in log precisions."""

    log_alpha: float
    log_beta: float
    converged: bool
    noise_at_floor: bool

    @property
    def alpha(self) -> float:
        return float(np.exp(self.log_alpha))

    @property
    def beta(self) -> float:
        return float(np.exp(self.log_beta))

    @property
    def noise_std(self) -> float:
        return float(np.exp(-0.5 * self.log_beta))

    def info(self, spec: _Spectrum) -> dict:
        return {
            "converged": bool(self.converged),
            "rank": spec.rank,
            "noise_at_floor": bool(self.noise_at_floor),
        }


def _target_scale(spec: _Spectrum) -> float:
    """|W y|² (1 when every target is zero, so that the β scale stays finite)."""
    return spec.yty if spec.yty > 0 else 1.0


def _log_beta_max(spec: _Spectrum) -> float:
    """log β at the noise floor: noise_std = 1e-6 · RMS(W y)."""
    return float(np.log(max(spec.n_rows, 1) / _target_scale(spec)) - 2.0 * np.log(_NOISE_FLOOR))


def log_evidence(spec: _Spectrum, log_alpha: float, log_beta: float) -> float:
    """log p(y | α, β) of the weighted rows, constants included, so that models with other
    bases (other P) fitted to the same rows compare: the evidence does not depend on how θ is
    scaled, so Γ drops out."""
    lam, b, n, p = spec.lam, spec.b, spec.n_rows, len(spec.lam)
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    denom = beta * lam + alpha
    misfit = spec.r_perp + np.sum((b * alpha / denom) ** 2)
    z2 = np.sum(lam * (beta * b / denom) ** 2)
    return float(
        0.5 * p * log_alpha
        + 0.5 * n * log_beta
        - 0.5 * beta * misfit
        - 0.5 * alpha * z2
        - 0.5 * np.sum(np.log(denom))
        - 0.5 * n * np.log(2.0 * np.pi)
    )


def _maximise_evidence(spec: _Spectrum) -> _Optimum:
    """The isotropic (α, β) of largest log evidence; converged only strictly inside the bounds."""
    import scipy.optimize

    lam, n = spec.lam, spec.n_rows

    def negative_log_evidence(x):
        return -log_evidence(spec, x[0], x[1])

    lam_mean = float(np.mean(lam))
    lam_scale = lam_mean if lam_mean > 0 else 1.0
    start = np.log([lam_scale * 1e-6, max(n, 1) / _target_scale(spec)])
    bounds = [(start[0] - 80.0, start[0] + 80.0), (start[1] - 80.0, _log_beta_max(spec))]
    best = None
    for shift in (0.0, 8.0, -8.0):
        x0 = start + np.array([shift, 4.0])
        res = scipy.optimize.minimize(negative_log_evidence, x0, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    at_bound = [
        abs(v - lo) < 1e-6 or abs(v - hi) < 1e-6 for v, (lo, hi) in zip(best.x, bounds, strict=True)
    ]
    at_floor = abs(best.x[1] - bounds[1][1]) < 1e-6
    return _Optimum(
        float(best.x[0]), float(best.x[1]), bool(best.success and not any(at_bound)), bool(at_floor)
    )


def _warn_degenerate(
    name: str, spec: _Spectrum, opt: _Optimum, not_converged: str, stacklevel: int = 3
) -> None:
    """One LinAlgWarning for a fit with fewer rows than parameters, that did not converge, or
    whose data determine fewer than half of the directions.

    A converged fit with a modest rank deficit warns of nothing: the prior deciding a few
    directions the data leave open is what BLR is for (a fitted ACE basis is always somewhat
    redundant), and ``info["rank"]`` reports it. Below half, the prior sets most of the model:
    data such as an E–V curve of perfect crystals, which fixes every displacement.
    """
    p, n, k = len(spec.lam), spec.n_rows, spec.rank
    if opt.converged and n >= p and k >= _MOSTLY_DATA * p:
        return
    parts = []
    if k < p or n < p:
        parts.append(
            f"the data determine only {k} of {p} directions (rank {k}){_rows_note(n, p)}; "
            f"the prior decides the other {p - k}"
        )
    if opt.noise_at_floor:
        parts.append(
            f"the noise precision β reached its bound: the rows are fitted to within noise_std = "
            f"{opt.noise_std:.3g} ({_NOISE_FLOOR:g} × the RMS weighted target), "
            "so the labels look noise-free, "
            "the evidence has no maximum and the posterior is overconfident; not converged"
        )
    elif not opt.converged:
        parts.append(not_converged)
    if not opt.converged:
        parts.append("add configurations that vary what the data leave open, or use QR(lambda_)")
    warnings.warn(f"{name}: " + "; ".join(parts), LinAlgWarning, stacklevel=stacklevel)


def _ard_covariance(ata: np.ndarray, alpha: np.ndarray, beta: float) -> tuple[np.ndarray, bool]:
    """(β AᵀA + diag α)⁻¹ and whether Cholesky succeeded (else a pseudo-inverse, which drops
    the directions whose α_k collapsed where the data are silent)."""
    precision = beta * ata + np.diag(alpha)
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(precision), np.eye(len(alpha))), True
    except np.linalg.LinAlgError:
        return np.linalg.pinv(precision), False
