"""Fit the linear parameters of a model or stack to labelled configurations."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from mlff.fitting.assembly import Weights, assemble
from mlff.fitting.errors import ErrorTable, evaluate_errors
from mlff.fitting.solvers import QR, Solution
from mlff.protocol import LinearSiteModel

__all__ = ["FitResult", "fit", "fit_errors", "smoothness_prior"]


def smoothness_prior(model: LinearSiteModel, p: float = 2.0) -> np.ndarray:
    """Diagonal prior Γ (P,) = degree^p: rougher functions (higher n, l, order) cost more.

    Degrees come from :meth:`LinearSiteModel.basis_degrees` (Σ (n + w_l·l) for ACE, n for the
    pair basis), so Γ is 1 for the smoothest functions.
    """
    degrees = np.asarray(model.basis_degrees(), dtype=float)
    return np.maximum(degrees, 1.0) ** p


@dataclass
class FitResult:
    """The fitted model, the solver's solution and error tables ("train", and "test" if given)."""

    model: LinearSiteModel
    solution: Solution
    errors: dict[str, ErrorTable]
    n_rows: int

    def committee(self, size: int = 16, seed: int = 0) -> np.ndarray:
        """(size, P) parameter sets from the BLR posterior."""
        return self.solution.committee(size, seed)

    def calculator(self, committee_size: int = 0, seed: int = 0, **kwargs):
        """An ASE calculator of the fitted model; with a committee it also reports
        ``energy_std`` and ``forces_std``."""
        from mlff.calculators import SiteCalculator

        committee = self.committee(committee_size, seed) if committee_size else None
        return SiteCalculator(self.model, committee=committee, **kwargs)

    def __str__(self) -> str:
        p = self.model.length_basis()
        parts = [f"fitted {p} parameters on {self.n_rows} rows"]
        if self.solution.noise_std is not None:
            parts.append(f"BLR noise (weighted rows): {self.solution.noise_std:.4g}")
        rank = self.solution.info.get("rank")
        if rank is not None and rank < p:
            parts.append(
                f"the data determine {rank} of {p} directions; the prior or cut decides the rest"
            )
        for name, table in self.errors.items():
            parts.append(f"\n{name} errors\n{table}")
        return "\n".join(parts)


def fit(
    model: LinearSiteModel,
    train: Sequence[Atoms],
    solver=None,
    weights: Weights | Mapping | None = None,
    prior: np.ndarray | str | None = None,
    test: Sequence[Atoms] | None = None,
    normal_equations: bool = False,
    n_workers: int = 1,
    progress: bool = False,
    timings: dict | None = None,
) -> FitResult:
    """Assemble, solve, set θ on ``model`` and report errors.

    Args:
        model: a linear model or a :class:`~mlff.Stack`, or a calculator of one
            (:class:`~mlff.SiteCalculator`, :class:`~mlff.StackedCalculator`); its θ is
            overwritten.
        train, test: labelled ``ase.Atoms`` (energy, forces, stress: any subset).
        solver: ``QR(lambda_)`` (default ``QR(1e-6)``), ``RRQR``, ``TruncatedSVD`` or ``BLR``.
        weights: :class:`~mlff.fitting.assembly.Weights` or a mapping of its fields.
        prior: Γ (P,), or ``"smoothness"`` for :func:`smoothness_prior`.
        normal_equations: assemble AᵀW²A only (memory O(P²)); QR and BLR accept it.
        timings: if given, filled with the seconds of each stage (assemble, solve, errors).

    Raises ``ValueError`` before any solve when there is nothing to fit (no labels, or every
    labelled row weighted zero) and, naming the configuration, when one cannot be assembled.
    """
    from mlff.calculators import SiteCalculator

    if isinstance(model, SiteCalculator):
        model = model.model
    if not isinstance(model, LinearSiteModel):
        raise TypeError(
            f"fit() takes a LinearSiteModel, a Stack or a calculator of one, "
            f"got {type(model).__name__}"
        )
    timings = {} if timings is None else timings
    clock = time.perf_counter()
    solver = QR() if solver is None else solver
    if isinstance(prior, str):
        if prior != "smoothness":
            raise ValueError(f"prior must be an array, None or 'smoothness', got {prior!r}")
        prior = smoothness_prior(model)
    train = list(train)
    problem = assemble(
        train,
        model,
        weights,
        normal_equations=normal_equations,
        n_workers=n_workers,
        progress=progress,
    )
    timings["assemble"] = time.perf_counter() - clock
    clock = time.perf_counter()
    solution = solver.solve(problem, prior)
    model.set_linear_parameters(torch.from_numpy(np.ascontiguousarray(solution.theta)))
    timings["solve"] = time.perf_counter() - clock
    errors = fit_errors(model, train, test, timings)
    return FitResult(model=model, solution=solution, errors=errors, n_rows=problem.n_rows)


def fit_errors(model, train, test=None, timings: dict | None = None) -> dict:
    """Error tables of a fitted ``model``: "train", and "test" if given; the seconds go into
    ``timings["errors"]``."""
    from mlff.calculators import SiteCalculator

    clock = time.perf_counter()
    calc = SiteCalculator(model)
    errors = {"train": evaluate_errors(calc, train)}
    if test is not None:
        errors["test"] = evaluate_errors(calc, test)
    if timings is not None:
        timings["errors"] = time.perf_counter() - clock
    return errors
