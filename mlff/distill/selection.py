"""Query by committee: rank candidates by the student committee's force spread and pick the
most uncertain ones that are not near-duplicates of each other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from mlff.graph import build_graph

__all__ = ["committee_scores", "select_by_committee"]


def committee_scores(candidates: Sequence[tuple[Atoms, str, dict]], calculator) -> np.ndarray:
    """Max over atoms of ``forces_std`` (eV/Å) for each candidate: (n_candidates,)."""
    scores = []
    for atoms, _, _ in candidates:
        probe = atoms.copy()
        scores.append(float(np.max(calculator.get_property("forces_std", probe))))
    return np.array(scores)


def _descriptor(atoms: Atoms, model) -> np.ndarray:
    """Mean site basis over atoms, normalised per column scale: a cheap fingerprint."""
    graph = build_graph(atoms, model.cutoff, dtype=model.dtype, device=model.device)
    with torch.no_grad():
        vec = model.site_basis(graph).mean(0).cpu().numpy()
    return vec


def select_by_committee(
    candidates: Sequence[tuple[Atoms, str, dict]],
    calculator,
    n_select: int,
    min_distance: float = 0.02,
) -> list[tuple[tuple[Atoms, str, dict], float]]:
    """The ``n_select`` candidates with the largest committee force spread, skipping any whose
    fingerprint is within ``min_distance`` (relative Euclidean distance) of one already picked.

    ``calculator`` is a :class:`~mlff.SiteCalculator` built with a committee. Returns
    (candidate, score) pairs, most uncertain first.
    """
    if n_select < 0:
        raise ValueError(f"n_select must be >= 0, got {n_select}")
    if not candidates or n_select == 0:
        return []
    scores = committee_scores(candidates, calculator)
    model = calculator.model
    fingerprints = np.array([_descriptor(atoms, model) for atoms, _, _ in candidates])
    scale = np.abs(fingerprints).max(0)
    scale[scale == 0] = 1.0
    fingerprints = fingerprints / scale
    picked: list[int] = []
    for index in np.argsort(-scores):
        if len(picked) == n_select:
            break
        if picked:
            dist = np.linalg.norm(fingerprints[picked] - fingerprints[index], axis=1)
            norm = max(np.linalg.norm(fingerprints[index]), 1e-12)
            if np.min(dist) / norm < min_distance:
                continue
        picked.append(int(index))
    return [(candidates[i], float(scores[i])) for i in picked]
