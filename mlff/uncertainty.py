"""Per-atom uncertainty from a BLR committee, and the extrapolation grade.

A committee is K parameter sets θ_k (K, P) drawn from the Bayesian posterior of a fit
(:meth:`~mlff.fitting.FitResult.committee`). A linear student's site energy is
E_i = fixed_i + b_i·θ, with b_i the site basis of atom i (:meth:`site_basis`), so the spread of
atom i over the committee is

    σ_i = std_k (b_i·θ_k)   (eV; one basis evaluation and K dot products per atom)

The *extrapolation grade* is σ_i divided by a reference scale measured once on the training
set: the largest σ over every atom of every training configuration. Grade ≤ 1 on every
training atom by construction; grade 1 means "as uncertain as the most uncertain atom the fit
saw", and grade ≫ 1 means the atom is in an environment the training set did not cover.

Why the maximum and not a high percentile: a percentile puts some training atoms (the
surfaces, vacancies, hard rattles that fill the tail) above 1 by construction, so a guard at a
threshold near 1 would fire on configurations the student was trained on, and "grade 1" would
mean a different thing for every data set size. The maximum is what PACE's D-optimality grade
also calls 1 (the edge of the training set's active set), it needs no setting, and it is what
the guard's default threshold was measured against. Its weakness is one outlier atom: a hard
rattle with a bond far shorter than the rest raises the scale for everything (docs/md.md shows
such a set and what the guard then still sees). Sampling noise of a K-member committee (each
σ_i to about ±1/√(2K), ±18 % at K = 16) moves the maximum up a little, which errs on the side of
fewer false alarms.

Cost: the basis b_i is the expensive part, evaluated on the torch route; the K dot products are
negligible. A D-optimality (MaxVol) grade needs the same b_i and then P products per atom
instead of K, so it is never cheaper. Measured against an MD step in docs/md.md,
"Extrapolation guard".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from ase import Atoms

from mlff.graph import Graph, build_graph
from mlff.protocol import LinearSiteModel, SiteModel

if TYPE_CHECKING:
    from mlff.fitting.fit import FitResult

__all__ = [
    "DEFAULT_COMMITTEE_SIZE",
    "MAX_COMMITTEE_SIZE",
    "Committee",
    "candidate_grades",
    "rank_candidates",
    "site_energy_std",
    "training_spreads",
]

#: Committee members drawn by :meth:`Committee.from_fit` unless told otherwise: σ_i to ±18 %.
DEFAULT_COMMITTEE_SIZE = 16
#: Most members a committee may have (a checkpoint with more is refused): far beyond the
#: ~10-64 that resolve a standard deviation, and each one is a full parameter vector.
MAX_COMMITTEE_SIZE = 256


@dataclass(frozen=True, eq=False)
class Committee:
    """K posterior parameter sets and the training set's largest per-atom spread.

    Args:
        thetas: (K, P) parameter sets, K ≥ 2, finite; stored as a read-only float64 copy.
        scale: eV, the largest per-atom site-energy spread σ over the training atoms
            (:func:`training_spreads`); the extrapolation grade is σ_i / scale. Finite, > 0.

    Build one with :meth:`from_fit` (a BLR :class:`~mlff.fitting.FitResult` and its training
    configurations) or :meth:`from_thetas`; save it with a checkpoint through
    :func:`mlff.io.save_model` ``(..., committee=)`` and read it back with
    :func:`mlff.io.load_committee`.
    """

    thetas: np.ndarray
    scale: float

    def __post_init__(self):
        thetas = self.thetas
        if isinstance(thetas, torch.Tensor):
            thetas = thetas.detach().cpu().numpy()
        if not isinstance(thetas, np.ndarray) or thetas.dtype.kind not in "fiu":
            raise ValueError(
                f"Committee.thetas must be a real (K, P) array, got {type(self.thetas).__name__}"
                + (f" of {thetas.dtype}" if isinstance(thetas, np.ndarray) else "")
            )
        if (
            thetas.ndim != 2
            or not 2 <= thetas.shape[0] <= MAX_COMMITTEE_SIZE
            or thetas.shape[1] < 1
        ):
            raise ValueError(
                f"Committee.thetas has shape {thetas.shape}; accepted (K, P) with "
                f"2 <= K <= {MAX_COMMITTEE_SIZE} members and P >= 1 parameters"
            )
        thetas = np.array(thetas, dtype=np.float64)  # a copy: the caller's array stays theirs
        if not np.isfinite(thetas).all():
            bad = int(np.argwhere(~np.isfinite(thetas))[0][0])
            raise ValueError(
                f"Committee.thetas has NaN/inf entries (member {bad}); accepted finite"
            )
        thetas.setflags(write=False)
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise ValueError(f"Committee.scale = {scale!r}; accepted a finite number > 0 (eV)")
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"Committee.scale = {scale!r}; accepted a finite number > 0 (eV)")
        object.__setattr__(self, "thetas", thetas)
        object.__setattr__(self, "scale", scale)

    @property
    def size(self) -> int:
        """K, the number of members."""
        return self.thetas.shape[0]

    @property
    def n_parameters(self) -> int:
        """P, the length of each member."""
        return self.thetas.shape[1]

    def __repr__(self) -> str:
        return f"Committee(K={self.size}, P={self.n_parameters}, scale={self.scale * 1e3:.4g} meV)"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Committee):
            return NotImplemented
        return self.scale == other.scale and np.array_equal(self.thetas, other.thetas)

    __hash__ = None  # mutable-looking contents: compare, do not hash

    def check_model(self, model: SiteModel) -> None:
        """Refuse (ValueError) a model this committee cannot describe."""
        if not isinstance(model, LinearSiteModel):
            raise ValueError(
                f"a committee needs a linear model (LinearSiteModel or Stack), "
                f"got {type(model).__name__}"
            )
        if model.length_basis() != self.n_parameters:
            raise ValueError(
                f"the committee has P = {self.n_parameters} parameters per member but the model "
                f"has {model.length_basis()}; draw the committee from this model's fit"
            )

    @classmethod
    def from_thetas(
        cls, model: LinearSiteModel, thetas, train: Iterable[Atoms | Graph]
    ) -> Committee:
        """The committee of ``thetas`` (K, P), its scale the largest per-atom spread over
        ``train`` (the configurations the model was fitted to; labels are not needed)."""
        draft = cls(np.asarray(thetas), 1.0)  # validates the shape before any basis is built
        draft.check_model(model)
        spreads = training_spreads(model, draft.thetas, train)
        if spreads.size == 0:
            raise ValueError("the training set has no atoms; the scale needs at least one")
        scale = float(spreads.max())
        if not scale > 0:
            raise ValueError(
                "every training atom has zero committee spread (a posterior without width, or "
                "atoms without neighbours); the grade has no scale"
            )
        return cls(draft.thetas, scale)

    @classmethod
    def from_fit(
        cls,
        result: FitResult,
        train: Iterable[Atoms | Graph],
        size: int = DEFAULT_COMMITTEE_SIZE,
        seed: int = 0,
    ) -> Committee:
        """``size`` members from a BLR fit's posterior (``result.committee(size, seed)``),
        scaled on ``train``, the configurations passed to :func:`~mlff.fitting.fit`."""
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise ValueError(f"size = {size!r}; accepted an integer 2 to {MAX_COMMITTEE_SIZE}")
        if not 2 <= size <= MAX_COMMITTEE_SIZE:
            raise ValueError(f"size = {size}; accepted an integer 2 to {MAX_COMMITTEE_SIZE}")
        return cls.from_thetas(result.model, result.committee(int(size), seed), train)

    def site_std(self, model: LinearSiteModel, graph: Graph) -> np.ndarray:
        """σ_i (n_atoms,) eV for ``graph`` (see :func:`site_energy_std`)."""
        self.check_model(model)
        thetas = torch.tensor(self.thetas, dtype=model.dtype, device=model.device)
        return site_energy_std(model, graph, thetas).cpu().numpy().astype(np.float64, copy=False)

    def grade(self, model: LinearSiteModel, atoms: Atoms | Graph) -> tuple[np.ndarray, np.ndarray]:
        """(σ_i (n_atoms,) eV, extrapolation grade σ_i / scale (n_atoms,)) of one
        configuration."""
        std = self.site_std(model, _graph(model, atoms))
        return std, std / self.scale


def _graph(model: SiteModel, atoms: Atoms | Graph) -> Graph:
    if isinstance(atoms, Graph):
        return atoms
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected ase.Atoms or a mlff Graph, got {type(atoms).__name__}")
    return build_graph(atoms, model.cutoff, dtype=model.dtype, device=model.device)


def site_energy_std(model: LinearSiteModel, graph: Graph, thetas: torch.Tensor) -> torch.Tensor:
    """std over members of b_i·θ_k: (n_atoms,) eV, for ``thetas`` (K, P) in the model's dtype
    and device. One basis evaluation (no gradients) and K dot products per atom."""
    with torch.no_grad():
        basis = model.site_basis(graph)  # (n_atoms, P)
        members = basis @ thetas.T  # (n_atoms, K)
        return members.std(dim=1, unbiased=False)


def training_spreads(model: LinearSiteModel, thetas, train: Iterable[Atoms | Graph]) -> np.ndarray:
    """σ of every atom of every configuration in ``train``, concatenated: (total atoms,) eV."""
    thetas = torch.tensor(np.asarray(thetas), dtype=model.dtype, device=model.device)
    out = [site_energy_std(model, _graph(model, atoms), thetas).cpu().numpy() for atoms in train]
    return np.concatenate(out) if out else np.zeros(0)


def _atoms_of(candidate) -> Atoms:
    """An Atoms, or the first element of a distillation candidate (atoms, config_type, info)."""
    if isinstance(candidate, Atoms):
        return candidate
    if isinstance(candidate, tuple) and candidate and isinstance(candidate[0], Atoms):
        return candidate[0]
    raise TypeError(
        f"a candidate is ase.Atoms or an (atoms, config_type, info) tuple, "
        f"got {type(candidate).__name__}"
    )


def candidate_grades(
    model: LinearSiteModel, committee: Committee, candidates: Sequence
) -> np.ndarray:
    """The largest per-atom extrapolation grade of each candidate: (n_candidates,).

    ``candidates`` are ``ase.Atoms`` or the distillation loop's ``(atoms, config_type, info)``
    tuples."""
    committee.check_model(model)
    thetas = torch.tensor(committee.thetas, dtype=model.dtype, device=model.device)
    grades = np.empty(len(candidates))
    for k, candidate in enumerate(candidates):
        std = site_energy_std(model, _graph(model, _atoms_of(candidate)), thetas)
        grades[k] = float(std.max()) / committee.scale if std.numel() else 0.0
    return grades


def rank_candidates(
    model: LinearSiteModel, committee: Committee, candidates: Sequence
) -> list[tuple[int, float]]:
    """(index, max grade) of every candidate, most extrapolating first (ties keep input order)."""
    grades = candidate_grades(model, committee, candidates)
    order = np.argsort(-grades, kind="stable")
    return [(int(k), float(grades[k])) for k in order]
