"""Least-squares solvers on numpy/scipy: ridge QR, rank-revealing QR, truncated SVD and
Bayesian linear regression with evidence maximisation (optionally ARD).

Every solver minimises Σ_rows w² (A θ − y)² (+ its regulariser) and accepts either a
:class:`~mlff.fitting.assembly.LinearProblem` or, where noted, accumulated
:class:`~mlff.fitting.assembly.NormalEquations`. An optional diagonal prior Γ (P,) scales the
regulariser per parameter: the penalty is λ Σ_k (Γ_k θ_k)². A problem that is singular or
ill-posed ends in a ``LinAlgWarning``, never in NaN parameters.

All regularisers act on column-scaled parameters: Γ_k is multiplied by the RMS of column k over
the weighted rows, so λ and the priors mean the same whatever the basis normalisation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg import LinAlgWarning

from mlff.fitting.assembly import LinearProblem, NormalEquations

__all__ = ["Solution", "QR", "RRQR", "TruncatedSVD", "BLR"]


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


def _prior(prior, problem) -> np.ndarray:
    """Γ_k · s_k: the user's prior times each column's RMS s_k over the weighted rows.

    Scaling by s_k makes every regulariser act on a function's *contribution* rather than on
    its raw coefficient, so the result does not depend on how the basis is normalised
    (ACE products span orders of magnitude). Columns that are zero get s_k = 1.
    """
    p = problem.n_params
    if prior is None:
        prior = np.ones(p)
    else:
        prior = np.asarray(prior, dtype=float)
        if prior.shape != (p,) or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
            raise ValueError(f"prior must be {p} positive finite numbers (one per parameter), got shape {prior.shape}")
    if isinstance(problem, NormalEquations):
        sq = np.diag(problem.AtA) / max(problem.n_rows, 1)
    else:
        sq = np.mean((problem.A * problem.w[:, None]) ** 2, axis=0)
    scale = np.sqrt(sq)
    scale[~(scale > 0)] = 1.0
    return prior * scale


def _scaled_rows(problem, prior, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted rows with Γ-scaled columns, (W A Γ⁻¹, W y, Γ), for solvers that need the rows."""
    if isinstance(problem, NormalEquations):
        raise TypeError(f"{name} needs the rows; assemble without normal_equations or use QR/BLR")
    gamma = _prior(prior, problem)
    A, y = _weighted(problem)
    return A / gamma, y, gamma


def _finite(theta: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(theta)):
        warnings.warn(f"{name}: the solution was not finite; returning zeros", LinAlgWarning, stacklevel=3)
        return np.zeros_like(theta)
    return theta


@dataclass
class QR:
    """Ridge regression by QR of the augmented system [W A; √λ Γ] θ = [W y; 0].

    With ``lambda_=0`` and a rank-deficient A, warns and returns the least-norm solution.
    Accepts normal equations too (solved by Cholesky of AᵀW²A + λΓ²).
    """

    lambda_: float = 1e-6

    def __post_init__(self):
        if not (np.isfinite(self.lambda_) and self.lambda_ >= 0):
            raise ValueError(f"lambda_ must be a finite number >= 0, got {self.lambda_!r}")

    def solve(self, problem, prior=None) -> Solution:
        gamma = _prior(prior, problem)
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
                warnings.warn("QR: normal equations are singular; using least squares", LinAlgWarning, stacklevel=2)
                z = scipy.linalg.lstsq(lhs, rhs)[0]
            return Solution(_finite(z / d, "QR"), info={"lambda": self.lambda_})
        A, y = _weighted(problem)
        if self.lambda_ > 0:
            A = np.vstack([A, np.sqrt(self.lambda_) * np.diag(gamma)])
            y = np.concatenate([y, np.zeros(problem.n_params)])
        q, r = scipy.linalg.qr(A, mode="economic")
        diag = np.abs(np.diag(r))
        if diag.size == 0 or diag.min() <= 1e-13 * diag.max():
            warnings.warn(
                "QR: the problem is rank deficient; returning the least-norm solution (raise lambda_ "
                "or use RRQR)", LinAlgWarning, stacklevel=2,
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
        A, y, gamma = _scaled_rows(problem, prior, "RRQR")
        q, r, piv = scipy.linalg.qr(A, mode="economic", pivoting=True)
        diag = np.abs(np.diag(r))
        rank = int(np.sum(diag > self.rtol * diag[0])) if diag.size and diag[0] > 0 else 0
        if rank < problem.n_params:
            warnings.warn(f"RRQR: kept {rank} of {problem.n_params} directions", LinAlgWarning, stacklevel=2)
        z = np.zeros(problem.n_params)
        if rank:
            z[piv[:rank]] = scipy.linalg.solve_triangular(r[:rank, :rank], (q.T @ y)[:rank])
        return Solution(_finite(z / gamma, "RRQR"), info={"rank": rank})


@dataclass
class TruncatedSVD:
    """Least squares keeping singular values above rtol · σ_max (in the Γ-scaled basis)."""

    rtol: float = 1e-10

    def solve(self, problem, prior=None) -> Solution:
        A, y, gamma = _scaled_rows(problem, prior, "TruncatedSVD")
        u, s, vt = scipy.linalg.svd(A, full_matrices=False)
        keep = s > self.rtol * (s[0] if s.size else 0.0)
        z = vt[keep].T @ ((u[:, keep].T @ y) / s[keep])
        return Solution(_finite(z / gamma, "TruncatedSVD"), info={"rank": int(keep.sum())})


@dataclass
class BLR:
    """Bayesian linear regression: θ ~ N(0, (α Γ²)⁻¹), noise ~ N(0, β⁻¹) on weighted rows.

    α and β maximise the evidence: for the isotropic prior by direct optimisation of the log
    evidence over (log α, log β) on the spectrum of the Γ-scaled design matrix (an SVD when the
    rows are available, an eigendecomposition of the normal equations otherwise); with
    ``ard=True`` every parameter has its own α_k (MacKay's fixed-point updates). Gives the
    posterior covariance, the noise level ``noise_std = β^(-1/2)`` (in weighted-row units) and
    a committee by sampling.
    """

    ard: bool = False
    max_iter: int = 1000
    tol: float = 1e-7

    def solve(self, problem, prior=None) -> Solution:
        p = problem.n_params
        gamma = _prior(prior, problem)
        lam, vecs, b, r_perp, n = _spectrum(problem, gamma)
        if self.ard:
            return self._solve_ard(gamma, lam, vecs, b, r_perp, n)
        log_alpha, log_beta, converged = _maximise_evidence(lam, b, r_perp, n, p)
        alpha, beta = np.exp(log_alpha), np.exp(log_beta)
        mean_z, cov_z = _posterior(lam, vecs, b, alpha, beta)
        effective = float(np.sum(beta * lam / (beta * lam + alpha)))
        if not converged:
            warnings.warn("BLR: evidence maximisation did not converge", LinAlgWarning, stacklevel=2)
        return Solution(
            _finite(mean_z / gamma, "BLR"),
            covariance=cov_z / gamma[:, None] / gamma[None, :],
            noise_std=float(1.0 / np.sqrt(beta)),
            prior_precision=float(alpha),
            info={"effective_parameters": effective, "converged": converged},
        )

    def _solve_ard(self, gamma, lam, vecs, b, r_perp, n) -> Solution:
        p = len(gamma)
        ata = (vecs * lam) @ vecs.T
        aty = vecs @ (np.sqrt(lam) * b)
        yty = r_perp + float(b @ b)
        scale = max(float(lam.max()), 1e-300)
        log_alpha, log_beta, _ = _maximise_evidence(lam, b, r_perp, n, p)
        alpha, beta = np.full(p, np.exp(log_alpha)), np.exp(log_beta)
        converged = False
        for it in range(self.max_iter):
            cov = _safe_inverse(beta * ata + np.diag(alpha))
            mean = beta * cov @ aty
            gamma_k = np.clip(1.0 - alpha * np.diag(cov), 0.0, 1.0)
            new_alpha = np.clip(gamma_k / np.maximum(mean**2, 1e-300), 1e-12, 1e12 * scale)
            effective = float(np.sum(gamma_k))
            residual = max(yty - 2 * mean @ aty + mean @ ata @ mean, 1e-300)
            new_beta = max(n - effective, 1e-12) / residual
            ratio = np.abs(np.log(new_alpha / alpha))
            # ARD drives irrelevant α_k to the cap; those have converged in effect.
            active = new_alpha < 1e11 * scale
            change = (ratio[active].max() if active.any() else 0.0) + abs(np.log(new_beta / beta))
            alpha, beta = new_alpha, new_beta
            if change < self.tol:
                converged = True
                break
        if not converged:
            warnings.warn(f"BLR(ard): did not converge in {self.max_iter} iterations", LinAlgWarning, stacklevel=3)
        cov = _safe_inverse(beta * ata + np.diag(alpha))
        mean = beta * cov @ aty
        return Solution(
            _finite(mean / gamma, "BLR"),
            covariance=cov / gamma[:, None] / gamma[None, :],
            noise_std=float(1.0 / np.sqrt(beta)),
            prior_precision=alpha,
            info={"iterations": it + 1, "effective_parameters": effective, "converged": converged},
        )


def _spectrum(problem, gamma):
    """Spectrum of the Γ-scaled weighted design matrix M = W A Γ⁻¹.

    Returns λ (P,) = squared singular values, V (P, P) right singular vectors, b (P,) = the
    coefficients of y along the left singular vectors (0 where λ = 0), the squared norm of the
    part of y outside the range of M, and n_rows. With rows the SVD keeps small singular
    directions accurate; with normal equations only the eigendecomposition of MᵀM is possible.
    """
    if isinstance(problem, NormalEquations):
        ata = problem.AtA / gamma[:, None] / gamma[None, :]
        lam, vecs = np.linalg.eigh(0.5 * (ata + ata.T))
        lam = np.clip(lam, 0.0, None)
        proj = vecs.T @ (problem.Aty / gamma)
        keep = lam > 1e-14 * max(lam.max(), 1e-300)
        b = np.where(keep, proj / np.sqrt(np.where(keep, lam, 1.0)), 0.0)
        return lam, vecs, b, max(problem.yty - float(b @ b), 0.0), problem.n_rows
    A, y = _weighted(problem)
    A = A / gamma
    u, sv, vt = scipy.linalg.svd(A, full_matrices=False)
    if vt.shape[0] < problem.n_params:  # fewer rows than parameters: complete the basis
        vt = np.vstack([vt, scipy.linalg.null_space(A).T])
    p = problem.n_params
    lam = np.zeros(p)
    lam[: len(sv)] = sv**2
    b = np.zeros(p)
    b[: len(sv)] = u[:, : len(sv)].T @ y
    perp = y - u[:, : len(sv)] @ b[: len(sv)]
    return lam, vt.T, b, float(perp @ perp), problem.n_rows


def _posterior(lam, vecs, b, alpha, beta):
    """Mean (P,) and covariance (P, P) of the whitened parameters."""
    denom = beta * lam + alpha
    mean = vecs @ (beta * np.sqrt(lam) * b / denom)
    cov = (vecs / denom) @ vecs.T
    return mean, cov


def _maximise_evidence(lam, b, r_perp, n, p):
    """(log α, log β, converged) maximising the log evidence of the isotropic model."""
    import scipy.optimize

    def negative_log_evidence(x):
        alpha, beta = np.exp(x)
        denom = beta * lam + alpha
        misfit = r_perp + np.sum((b * alpha / denom) ** 2)
        z2 = np.sum(lam * (beta * b / denom) ** 2)
        value = 0.5 * p * x[0] + 0.5 * n * x[1] - 0.5 * beta * misfit - 0.5 * alpha * z2 - 0.5 * np.sum(np.log(denom))
        return -value

    lam_scale = max(float(np.mean(lam)), 1e-300)
    y_scale = max(r_perp + float(b @ b), 1e-300)
    start = np.log([lam_scale * 1e-6, max(n, 1) / y_scale])
    bounds = [(start[0] - 80.0, start[0] + 80.0), (start[1] - 80.0, start[1] + 80.0)]
    best = None
    for shift in (0.0, 8.0, -8.0):
        x0 = start + np.array([shift, 4.0])
        res = scipy.optimize.minimize(negative_log_evidence, x0, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    at_bound = any(abs(v - lo) < 1e-6 or abs(v - hi) < 1e-6 for v, (lo, hi) in zip(best.x, bounds))
    return float(best.x[0]), float(best.x[1]), bool(best.success and not at_bound)


def _safe_inverse(matrix: np.ndarray) -> np.ndarray:
    try:
        c = scipy.linalg.cho_factor(matrix)
        return scipy.linalg.cho_solve(c, np.eye(len(matrix)))
    except np.linalg.LinAlgError:
        warnings.warn("BLR: posterior precision is singular; using a pseudo-inverse", LinAlgWarning, stacklevel=3)
        return np.linalg.pinv(matrix)
