"""Query by committee: rank candidates by the extrapolation grade the MD guard watches (the
committee's largest per-atom site-energy spread over the training scale, see
:mod:`mlff.uncertainty`) and pick the most extrapolating ones that are not near-duplicates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from mlff.graph import build_graph
from mlff.protocol import LinearSiteModel
from mlff.uncertainty import Committee, candidate_grades

__all__ = ["select_by_committee"]


def _descriptor(atoms: Atoms, model: LinearSiteModel) -> np.ndarray:
    """Mean site basis over atoms: a cheap fingerprint (P,)."""
    graph = build_graph(atoms, model.cutoff, dtype=model.dtype, device=model.device)
    with torch.no_grad():
        return model.site_basis(graph).mean(0).cpu().numpy()


def select_by_committee(
    candidates: Sequence[tuple[Atoms, str, dict]],
    model: LinearSiteModel,
    committee: Committee,
    n_select: int,
    min_distance: float = 0.02,
) -> list[tuple[tuple[Atoms, str, dict], float]]:
    """The ``n_select`` candidates with the largest extrapolation grade, skipping any whose
    fingerprint is within ``min_distance`` (relative Euclidean distance) of one already picked.

    Returns (candidate, grade) pairs, most extrapolating first.
    """
    if n_select < 0:
        raise ValueError(f"n_select must be >= 0, got {n_select}")
    if not candidates or n_select == 0:
        return []
    grades = candidate_grades(model, committee, candidates)
    fingerprints = np.array([_descriptor(atoms, model) for atoms, _, _ in candidates])
    scale = np.abs(fingerprints).max(0)
    scale[scale == 0] = 1.0
    fingerprints = fingerprints / scale
    picked: list[int] = []
    for index in np.argsort(-grades, kind="stable"):
        if len(picked) == n_select:
            break
        if picked:
            dist = np.linalg.norm(fingerprints[picked] - fingerprints[index], axis=1)
            norm = max(np.linalg.norm(fingerprints[index]), 1e-12)
            if np.min(dist) / norm < min_distance:
                continue
        picked.append(int(index))
    return [(candidates[i], float(grades[i])) for i in picked]
