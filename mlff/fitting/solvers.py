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
            lhs = problem.AtA + self.lambda_ * np.diag(gamma**2)
            try:
                c = scipy.linalg.cho_factor(lhs)
                theta = scipy.linalg.cho_solve(c, problem.Aty)
            except np.linalg.LinAlgError:
                warnings.warn("QR: normal equations are singular; using least squares", LinAlgWarning, stacklevel=2)
                theta = scipy.linalg.lstsq(lhs, problem.Aty)[0]
            return Solution(_finite(theta, "QR"), info={"lambda": self.lambda_})
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
        if isinstance(problem, NormalEquations):
            raise TypeError("RRQR needs the rows; assemble without normal_equations or use QR/BLR")
        gamma = _prior(prior, problem)
        A, y = _weighted(problem)
        A = A / gamma
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
        if isinstance(problem, NormalEquations):
            raise TypeError("TruncatedSVD needs the rows; assemble without normal_equations or use QR/BLR")
        gamma = _prior(prior, problem)
        A, y = _weighted(problem)
        u, s, vt = scipy.linalg.svd(A / gamma, full_matrices=False)
        keep = s > self.rtol * (s[0] if s.size else 0.0)
        z = vt[keep].T @ ((u[:, keep].T @ y) / s[keep])
        return Solution(_finite(z / gamma, "TruncatedSVD"), info={"rank": int(keep.sum())})


@dataclass
class BLR:
    """Bayesian linear regression: θ ~ N(0, (α Γ²)⁻¹), noise ~ N(0, β⁻¹) on weighted rows.

    α and β maximise the evidence (MacKay's fixed-point updates); with ``ard=True`` every
    parameter has its own α_k. Gives the posterior covariance, the noise level
    ``noise_std = β^(-1/2)`` (in weighted-row units) and a committee by sampling.
    Accepts normal equations.
    """

    ard: bool = False
    max_iter: int = 1000
    tol: float = 1e-7

    def solve(self, problem, prior=None) -> Solution:
        p = problem.n_params
        gamma = _prior(prior, problem)
        if isinstance(problem, NormalEquations):
            ata, aty, yty, n = problem.AtA, problem.Aty, problem.yty, problem.n_rows
        else:
            A, y = _weighted(problem)
            ata, aty, yty, n = A.T @ A, A.T @ y, float(y @ y), problem.n_rows
        # Work in the Γ-whitened parameters z = Γ θ: an isotropic (or diagonal, ARD) prior.
        ata = ata / gamma[:, None] / gamma[None, :]
        aty = aty / gamma
        eig, vecs = np.linalg.eigh(0.5 * (ata + ata.T))
        eig = np.clip(eig, 0.0, None)
        scale = max(float(eig.max()), 1e-300)
        alpha = np.full(p, 1e-6 * scale / max(yty / max(n, 1), 1e-300)) if self.ard else 1.0
        beta = max(n, 1) / max(yty, 1e-300)
        converged = False
        for it in range(self.max_iter):
            if self.ard:
                precision = beta * ata + np.diag(alpha)
                cov = _safe_inverse(precision)
                mean = beta * cov @ aty
                gamma_k = 1.0 - alpha * np.diag(cov)
                new_alpha = np.clip(gamma_k / np.maximum(mean**2, 1e-300), 1e-12, 1e12 * scale)
                effective = float(np.sum(gamma_k))
            else:
                proj = vecs.T @ aty
                mean = vecs @ (beta * proj / (beta * eig + alpha))
                effective = float(np.sum(beta * eig / (beta * eig + alpha)))
                new_alpha = effective / max(float(mean @ mean), 1e-300)
            residual = max(yty - 2 * mean @ aty + mean @ ata @ mean, 1e-300)
            new_beta = max(n - effective, 1e-12) / residual
            ratio = np.abs(np.log(np.atleast_1d(new_alpha) / np.atleast_1d(alpha)))
            # ARD drives irrelevant α_k to the cap; those have converged in effect.
            active = np.atleast_1d(new_alpha) < 1e11 * scale
            change = (ratio[active].max() if active.any() else 0.0) + abs(np.log(new_beta / beta))
            alpha, beta = new_alpha, new_beta
            if change < self.tol:
                converged = True
                break
        if not converged:
            warnings.warn(f"BLR: evidence maximisation did not converge in {self.max_iter} iterations", LinAlgWarning, stacklevel=2)
        if self.ard:
            cov = _safe_inverse(beta * ata + np.diag(alpha))
        else:
            cov = (vecs / (beta * eig + alpha)) @ vecs.T
        mean = beta * cov @ aty
        theta = _finite(mean / gamma, "BLR")
        covariance = cov / gamma[:, None] / gamma[None, :]
        return Solution(
            theta,
            covariance=covariance,
            noise_std=float(1.0 / np.sqrt(beta)),
            prior_precision=alpha,
            info={"iterations": it + 1, "effective_parameters": effective, "converged": converged},
        )


def _safe_inverse(matrix: np.ndarray) -> np.ndarray:
    try:
        c = scipy.linalg.cho_factor(matrix)
        return scipy.linalg.cho_solve(c, np.eye(len(matrix)))
    except np.linalg.LinAlgError:
        warnings.warn("BLR: posterior precision is singular; using a pseudo-inverse", LinAlgWarning, stacklevel=3)
        return np.linalg.pinv(matrix)
