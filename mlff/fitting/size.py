"""``--size auto``: the ACE basis size chosen from the data by the BLR evidence.

The candidates are a ladder of ACE bases (:data:`SIZES`), each containing the one before:
more radial functions, higher total degrees, and at the top a fourth correlation order. The
largest one within ``max_parameters`` is assembled once (normal equations); every smaller
candidate's normal equations are a sub-block of those (its functions are columns of the
largest, checked numerically on a training configuration), so each costs one BLR solve.
The candidate of largest log evidence p(y | α, β) wins: the evidence trades fit against the
volume of parameter space a basis spends, so it grows with the basis while the data can
resolve it and falls after (MacKay 1992), without held-out data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

__all__ = ["SIZES", "SizeCandidate", "choose_size", "size_options"]

#: ACE options of each size; "m" is the default basis (n_max 10, degrees 10 / 15 / 14).
SIZES: dict[str, dict] = {
    "xs": {"n_max": 6, "max_degree": {1: 6, 2: 8, 3: 8}},
    "s": {"n_max": 8, "max_degree": {1: 8, 2: 11, 3: 11}},
    "m": {"n_max": 10, "max_degree": {1: 10, 2: 15, 3: 14}},
    "l": {"n_max": 12, "max_degree": {1: 12, 2: 18, 3: 17}},
    "xl": {"n_max": 12, "max_degree": {1: 12, 2: 18, 3: 17, 4: 14}},
}
#: What ``size`` may say besides "auto".
SIZE_NAMES = tuple(SIZES)


def size_options(size: str, ace: Mapping) -> dict:
    """The ACE options of a named size with the user's ``ace`` laid over them."""
    if size not in SIZES:
        raise ValueError(f"size = {size!r}; accepted 'auto' or one of {', '.join(SIZES)}")
    return {**SIZES[size], **dict(ace)}


@dataclass(frozen=True)
class SizeCandidate:
    """One rung: its name, parameters P, log evidence, BLR noise (weighted-row units),
    effective parameters and the RMS weighted training residual."""

    name: str
    parameters: int
    log_evidence: float
    noise_std: float
    effective_parameters: float
    residual_rms: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _function_keys(model) -> list:
    from mlff.models import ACEModel

    (ace,) = [p for p in model.linear_parts if isinstance(p, ACEModel)]
    return [(f.factors, f.coupling) for f in ace.basis_spec], ace


def _columns(small, large, probe: Atoms) -> np.ndarray | None:
    """The columns of ``large``'s θ that are ``small``'s, in ``small``'s order, or None when
    ``small``'s basis is not a sub-basis of ``large``'s (checked on ``probe``)."""
    from mlff.graph import build_graph

    keys_small, ace_small = _function_keys(small)
    keys_large, ace_large = _function_keys(large)
    where = {key: k for k, key in enumerate(keys_large)}
    if any(key not in where for key in keys_small):
        return None
    pick = np.array([where[key] for key in keys_small])
    offset = sum(
        p.length_basis() for p in large.linear_parts[: large.linear_parts.index(ace_large)]
    )
    if offset != sum(
        p.length_basis() for p in small.linear_parts[: small.linear_parts.index(ace_small)]
    ):
        return None
    n_large = ace_large.n_basis
    blocks = [
        np.arange(offset),  # the parts before ACE (pair) are the same in every candidate
        *[offset + s * n_large + pick for s in range(ace_small.n_elements)],
    ]
    columns = np.concatenate(blocks)
    with torch.no_grad():
        graph = build_graph(probe, large.cutoff)
        a = small.site_basis(graph).numpy()
        b = large.site_basis(graph).numpy()[:, columns]
    if not np.allclose(a, b, rtol=1e-10, atol=1e-12 * max(np.abs(b).max(), 1.0)):
        return None
    return columns


def choose_size(
    candidates: Mapping[str, object],
    train: Sequence[Atoms],
    weights,
    n_workers: int = 1,
    progress: bool = False,
    log=print,
):
    """(name, model with θ set, Solution, n_rows, [SizeCandidate]) of the candidate stacks
    (name → Stack, smallest first) with the largest BLR evidence on ``train``."""
    from mlff.fitting.assembly import NormalEquations, assemble
    from mlff.fitting.solvers import BLR

    names = list(candidates)
    largest = candidates[names[-1]]
    log(
        f"size auto: assembling the largest candidate ({names[-1]}, "
        f"{largest.length_basis()} parameters) once"
    )
    problem = assemble(
        train, largest, weights, normal_equations=True, n_workers=n_workers, progress=progress
    )
    results, solutions = [], {}
    for name in names:
        model = candidates[name]
        columns = _columns(model, largest, train[0]) if model is not largest else None
        if model is largest:
            sub = problem
        elif columns is None:
            log(f"size auto: {name} is not a sub-basis of {names[-1]}; assembling it")
            sub = assemble(train, model, weights, normal_equations=True, n_workers=n_workers)
        else:
            sub = NormalEquations(
                problem.AtA[np.ix_(columns, columns)],
                problem.Aty[columns],
                problem.yty,
                problem.n_rows,
            )
        solution = BLR().solve(sub, None)
        theta = solution.theta
        residual = sub.yty - 2.0 * theta @ sub.Aty + theta @ sub.AtA @ theta
        results.append(
            SizeCandidate(
                name,
                model.length_basis(),
                float(solution.info["log_evidence"]),
                float(solution.noise_std),
                float(solution.info["effective_parameters"]),
                float(np.sqrt(max(residual, 0.0) / max(sub.n_rows, 1))),
            )
        )
        solutions[name] = (solution, sub.n_rows)
    best = max(results, key=lambda c: c.log_evidence)
    solution, n_rows = solutions[best.name]
    model = candidates[best.name]
    model.set_linear_parameters(torch.from_numpy(np.ascontiguousarray(solution.theta)))
    return best.name, model, solution, n_rows, results


def size_curve_plot(candidates: Sequence[SizeCandidate], chosen: str, path) -> None:
    """The curve in a PNG: log evidence and training residual against parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlff.io import atomic_write

    p = [c.parameters for c in candidates]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.plot(p, [c.log_evidence for c in candidates], "o-")
    ax2.plot(p, [c.residual_rms for c in candidates], "s-")
    for c in candidates:
        ax1.annotate(
            c.name + (" (chosen)" if c.name == chosen else ""), (c.parameters, c.log_evidence)
        )
    ax1.set_xlabel("parameters")
    ax1.set_ylabel("log evidence")
    ax2.set_xlabel("parameters")
    ax2.set_ylabel("RMS weighted training residual")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
