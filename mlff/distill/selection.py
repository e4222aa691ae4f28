"""Query by committee: rank candidates by the extrapolation grade the MD guard watches (the
committee's largest per-atom site-energy spread over the training scale, see
:mod:`mlff.uncertainty`) and pick the most extrapolating ones that are not near-duplicates.

Picks are stratified by config_type (an MD temperature level, the melt-quench, a generator):
ranked by grade alone, the hot and dense frames, always the most uncertain, would take every
pick, and the crystal at the user's working temperatures would never be labelled again."""

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
    stratify: bool = True,
) -> list[tuple[tuple[Atoms, str, dict], float]]:
    """``n_select`` candidates by extrapolation grade, skipping any whose fingerprint is within
    ``min_distance`` (relative Euclidean distance) of one already picked.

    With ``stratify`` the picks go round-robin over the candidates' config_types, each taking
    its most extrapolating remaining candidate in turn (types whose best grade is highest go
    first in every turn); without it, the largest grades overall.

    Returns (candidate, grade) pairs in the order picked.
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
    for index in _visiting_order(grades, [c[1] for c in candidates] if stratify else None):
        if len(picked) == n_select:
            break
        if picked:
            dist = np.linalg.norm(fingerprints[picked] - fingerprints[index], axis=1)
            norm = max(np.linalg.norm(fingerprints[index]), 1e-12)
            if np.min(dist) / norm < min_distance:
                continue
        picked.append(int(index))
    return [(candidates[i], float(grades[i])) for i in picked]


def _visiting_order(grades: np.ndarray, strata: Sequence[str] | None) -> list[int]:
    """Candidate indices in the order they are offered: by descending grade, interleaved
    over ``strata`` (one label per candidate) when given."""
    ranked = np.argsort(-grades, kind="stable")
    if strata is None:
        return [int(i) for i in ranked]
    queues: dict[str, list[int]] = {}
    for i in ranked:  # dicts keep insertion order: the stratum with the top grade comes first
        queues.setdefault(strata[i], []).append(int(i))
    order: list[int] = []
    for turn in range(max(len(q) for q in queues.values())):
        order += [q[turn] for q in queues.values() if turn < len(q)]
    return order
