"""One MD-like step of the neighbour list on 64-atom diamond Si (cutoff 5 Å, skin 0.5 Å).

``mlff``: ``VerletGraphBuilder.edge_arrays``, the calculators' path; ``vesin``: vesin's own
Verlet skin plus what mlff reads on top (see ``neighbour_lists.py``). Each round moves every
atom by 0.01 Å rms (untimed) and builds the edges; the first call, the build, is not timed.
The side-by-side table over sizes, with rebuilds: ``python benchmark/neighbour_lists.py``.
"""

from __future__ import annotations

import pytest
from neighbour_lists import CUTOFF, SKIN, VesinSkinEdges, diamond_si, random_walk, same_edges
from timing import median_seconds

from mlff.graph import VerletGraphBuilder


@pytest.mark.parametrize("method", ["mlff", "vesin"])
def test_neighbour_list_step(benchmark, method):
    atoms = diamond_si(64)
    trajectory = iter(random_walk(atoms, 50, 0.01, seed=0))
    if method == "mlff":
        lists = VerletGraphBuilder(CUTOFF, skin=SKIN)
    else:
        lists = VesinSkinEdges(CUTOFF, SKIN, len(atoms))
    lists.edge_arrays(atoms)

    def move():
        atoms.positions = next(trajectory)
        return (atoms,), {}

    edges = benchmark.pedantic(lists.edge_arrays, setup=move, rounds=40, warmup_rounds=1)
    assert same_edges(edges, VerletGraphBuilder(CUTOFF, skin=0.0).edge_arrays(atoms))
    benchmark.extra_info["n_atoms"] = len(atoms)
    benchmark.extra_info["us_per_step_median"] = median_seconds(benchmark) * 1e6
