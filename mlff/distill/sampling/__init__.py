"""Seed structures and candidate generators. Every generator takes a seed and is reproducible.

A generator yields ``(atoms, config_type, meta)`` triples; ``meta`` records how the structure
was made so the store can keep it next to the label. The molecular-dynamics generators
(:func:`md_frames`, :func:`melt`, :func:`melt_quench`) run with a calculator the caller gives
(the student during the active loop) and return lists of the same triples.

The generators cover the domain a user states (seed structures, a temperature range, a
pressure range):

- near a crystal: :func:`rattled`, :func:`strained`, :func:`vacancies`, :func:`divacancies`,
  :func:`interstitials`;
- surfaces: :func:`slabs` (non-periodic along the surface normal);
- pressure: :func:`compressed`, with :func:`volumetric_strain_for_pressure` to turn pressures
  into strains;
- crowding and short distances: :func:`clusters` (squeezed, non-periodic);
- liquids and glasses: :func:`packings` (random starts), :func:`melt`, :func:`melt_quench`,
  and :func:`md_frames` underneath.

Units are ASE's (Å, eV, K, fs for times given by the user, GPa for pressures).

The package's modules, one job each: :mod:`~mlff.distill.sampling.seeds` (presets, melting
points, supercells), :mod:`~mlff.distill.sampling.crystal` (near the crystal, surfaces,
pressure), :mod:`~mlff.distill.sampling.dense` (clusters, packings),
:mod:`~mlff.distill.sampling.md` (molecular dynamics) and
:mod:`~mlff.distill.sampling.common` (small shared helpers).
"""

from __future__ import annotations

from mlff.distill.sampling.common import Candidate as Candidate  # the type of a candidate
from mlff.distill.sampling.common import shortest_distance
from mlff.distill.sampling.crystal import (
    compressed,
    divacancies,
    estimate_bulk_modulus,
    interstitials,
    rattled,
    slabs,
    strained,
    surfaces,
    vacancies,
    volumetric_strain_for_pressure,
)
from mlff.distill.sampling.dense import clusters, packings
from mlff.distill.sampling.md import md_frames, melt, melt_quench
from mlff.distill.sampling.seeds import (
    MELTING_POINT_K,
    PRESETS,
    TEMPERATURE_FACTOR,
    default_temperature_range,
    seed_structure,
    seed_structures,
    supercell,
)

__all__ = [
    "PRESETS",
    "MELTING_POINT_K",
    "TEMPERATURE_FACTOR",
    "seed_structure",
    "seed_structures",
    "default_temperature_range",
    "supercell",
    "rattled",
    "strained",
    "vacancies",
    "divacancies",
    "interstitials",
    "slabs",
    "surfaces",
    "compressed",
    "clusters",
    "packings",
    "volumetric_strain_for_pressure",
    "estimate_bulk_modulus",
    "shortest_distance",
    "md_frames",
    "melt",
    "melt_quench",
]
