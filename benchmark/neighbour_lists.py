"""Neighbour lists along an MD-like trajectory: mlff's Verlet list against vesin's own skin.

    python benchmark/neighbour_lists.py [--sizes 64 512 4096] [--steps 300] [--rms 0.01]
                                        [--threads]

Diamond Si (a = 5.43 Å), cutoff 5.0 Å, skin 0.5 Å, fixed cell. Every step moves every atom by a
Gaussian displacement of ``--rms`` Å (root mean square of its length): a random walk, so atoms
cross skin/2 of their reference positions and both lists are rebuilt now and then. Per step:

``mlff``
    ``VerletGraphBuilder(5.0, skin=0.5).edge_arrays(atoms)``, the calculators' path: the kept
    list filtered in one compiled pass, rebuilt by vesin at cutoff + skin.
``vesin``
    one ``vesin.NeighborList(cutoff=5.0, full_list=True, sorted=True, skin=0.5)`` reused across
    steps computing i, j, S, D (vesin filters its cutoff + skin candidates to the cutoff and
    sorts them by centre each call), plus what mlff reads on top, as an
    :class:`~mlff.graph.EdgeArrays`: int64 indices, the centre offsets, the shortest edge (the
    overlap check), and the per-atoms cache kept while the atomic numbers stay the same.
``vesin+argsort``
    as ``vesin`` with ``sorted=False`` and a stable numpy argsort by centre instead (what
    mlff's one-off search did before it asked vesin to sort).
``vesin+counting``
    vesin's best showing here: ``sorted=False``, only i, j, D, read as views into vesin's
    buffers, and regrouped by centre in one compiled counting-sort pass that also gives the
    offsets and the shortest edge.

All see the same positions; at each step the methods run in turn (in a rotating order), so a
load on the machine falls on all alike. Reported: rebuilds, the median step (most steps reuse
the list), the median rebuild step, the total over all steps, and each total and median over
mlff's. ``--threads`` adds a table of one full vesin search (i, j, S, D, unsorted, as
``build_graph`` and the rebuilds run it) with one thread and with vesin's default (every core).
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import vesin
from ase import Atoms
from ase.build import bulk

from mlff.graph import EdgeArrays, VerletGraphBuilder, _vesin_threads
from mlff.kernels.edges import shortest_edge

CUTOFF, SKIN = 5.0, 0.5


def diamond_si(n_atoms: int) -> Atoms:
    """Cubic diamond Si (8 atoms a cell) repeated to ``n_atoms`` (8 k³)."""
    repeat = round((n_atoms / 8) ** (1 / 3))
    if 8 * repeat**3 != n_atoms:
        raise ValueError(f"diamond Si comes in 8·k³ atoms (64, 512, 4096, …), not {n_atoms}")
    return bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)


def random_walk(atoms: Atoms, steps: int, rms: float, seed: int = 0) -> np.ndarray:
    """(steps, n_atoms, 3) positions: each step adds to every atom a Gaussian displacement
    whose length has root mean square ``rms`` Å."""
    rng = np.random.default_rng(seed)
    kicks = rng.normal(0.0, rms / np.sqrt(3.0), (steps, len(atoms), 3))
    return atoms.positions + np.cumsum(kicks, axis=0)


@numba.njit(cache=True, nogil=True)
def _grouped_by_centre(i, j, vectors, n_atoms):
    """Pairs (i, j, r_ij) in any order regrouped by centre in one counting-sort pass: centers,
    neighbors (n,), vectors (n, 3), centre offsets (n_atoms + 1,) and the smallest squared
    length."""
    offsets = np.zeros(n_atoms + 1, dtype=np.int64)
    for e in range(i.shape[0]):
        offsets[i[e] + 1] += 1
    for a in range(n_atoms):
        offsets[a + 1] += offsets[a]
    fill = offsets[:-1].copy()
    n = i.shape[0]
    centers, neighbors = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    grouped = np.empty((n, 3))
    shortest = np.inf
    for e in range(n):
        c = i[e]
        k = fill[c]
        fill[c] = k + 1
        centers[k], neighbors[k] = c, j[e]
        x, y, z = vectors[e, 0], vectors[e, 1], vectors[e, 2]
        grouped[k, 0], grouped[k, 1], grouped[k, 2] = x, y, z
        shortest = min(shortest, x * x + y * y + z * z)
    return centers, neighbors, grouped, offsets, shortest


#: How each vesin variant gets the pairs grouped by centre.
VESIN_VARIANTS = {
    "vesin": "vesin sorts (sorted=True), i, j, S, D copied out",
    "vesin+argsort": "sorted=False, i, j, S, D copied out, numpy stable argsort",
    "vesin+counting": "sorted=False, i, j, D as views, one compiled counting-sort pass",
}


class VesinSkinEdges:
    """mlff's :class:`EdgeArrays` from a vesin NeighborList with a Verlet skin reused across
    calls (fixed cell or not: vesin charges box changes to the skin); ``variant`` is one of
    :data:`VESIN_VARIANTS`."""

    def __init__(self, cutoff: float, skin: float, n_atoms: int, variant: str = "vesin"):
        if variant not in VESIN_VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VESIN_VARIANTS)}, got {variant!r}")
        self.cutoff, self.variant = cutoff, variant
        self.nl = vesin.NeighborList(
            cutoff=cutoff,
            full_list=True,
            sorted=variant == "vesin",
            skin=skin,
            n_threads=_vesin_threads(n_atoms),
        )
        self.numbers: np.ndarray | None = None
        self.cache: dict = {}

    def edge_arrays(self, atoms: Atoms) -> EdgeArrays:
        if self.numbers is None or not np.array_equal(atoms.numbers, self.numbers):
            self.numbers, self.cache = atoms.numbers.astype(np.int64), {}
        where = {"points": atoms.positions, "box": atoms.cell.array, "periodic": atoms.pbc}
        if self.variant == "vesin+counting":  # views: regrouped into new arrays at once
            i, j, vectors = self.nl.compute(**where, quantities="ijD", copy=False)
            i, j, vectors, offsets, shortest2 = _grouped_by_centre(
                i.view(np.int64), j.view(np.int64), vectors, len(atoms)
            )
            shortest = float(np.sqrt(shortest2))
        else:
            i, j, _, vectors = self.nl.compute(**where, quantities="ijSD")
            i, j = i.view(np.int64), j.view(np.int64)  # vesin's size_t indices
            if self.variant == "vesin+argsort":
                order = np.argsort(i, kind="stable")
                i, j, vectors = i[order], j[order], vectors[order]
            offsets = np.searchsorted(i, np.arange(len(atoms) + 1))  # (n_atoms + 1,)
            shortest = float(shortest_edge(vectors))
        if shortest < 1e-6:
            raise ValueError(f"atoms overlap ({shortest:.2e} Å apart)")
        return EdgeArrays(
            self.numbers,
            i,
            j,
            vectors,
            self.cutoff,
            cache=self.cache,
            shortest=shortest,
            offsets=offsets,
        )


def same_edges(a: EdgeArrays, b: EdgeArrays) -> bool:
    """Whether two edge lists hold the same edges (i, j, r_ij), in whatever order: images of a
    pair differ by a lattice vector, so (i, j, r_ij to 0.1 Å) orders them alike."""
    if len(a.centers) != len(b.centers):
        return False
    sort = [np.lexsort((*np.round(e.vectors, 1).T[::-1], e.neighbors, e.centers)) for e in (a, b)]
    return (
        np.array_equal(a.centers[sort[0]], b.centers[sort[1]])
        and np.array_equal(a.neighbors[sort[0]], b.neighbors[sort[1]])
        and np.allclose(a.vectors[sort[0]], b.vectors[sort[1]], rtol=0.0, atol=1e-9)
    )


def _vesin_rebuild_steps(trajectory: np.ndarray, skin: float) -> np.ndarray:
    """(steps,) bool: the steps where vesin's fixed-cell criterion (an atom farther than skin/2
    from its reference position) rebuilds; the first step builds."""
    rebuilt = np.zeros(len(trajectory), dtype=bool)
    reference = None
    for k, positions in enumerate(trajectory):
        if reference is None or (((positions - reference) ** 2).sum(1) > (skin / 2) ** 2).any():
            rebuilt[k], reference = True, positions
    return rebuilt


def _fresh_methods(n_atoms: int) -> dict:
    methods = {"mlff": VerletGraphBuilder(CUTOFF, skin=SKIN)}
    for variant in VESIN_VARIANTS:
        methods[variant] = VesinSkinEdges(CUTOFF, SKIN, n_atoms, variant)
    return methods


def compare(n_atoms: int, steps: int, rms: float, seed: int = 0) -> dict:
    """Times every method along one trajectory; returns per-method step times (s) and which
    steps rebuilt, after checking that all give the same edges."""
    atoms = diamond_si(n_atoms)
    trajectory = random_walk(atoms, steps, rms, seed)
    # Warm up (compiled kernels, vesin's thread pool): a build and a kept step, on a copy.
    warm = atoms.copy()
    for method in _fresh_methods(n_atoms).values():
        method.edge_arrays(warm)
        method.edge_arrays(warm)
    methods = _fresh_methods(n_atoms)
    names = list(methods)
    times = {name: np.empty(steps) for name in names}
    n_edges = np.empty(steps, dtype=np.int64)
    mlff_rebuilt = np.zeros(steps, dtype=bool)
    for k in range(steps):
        atoms.positions = trajectory[k]
        before = methods["mlff"].rebuilds
        found = {}
        for name in names[k % len(names) :] + names[: k % len(names)]:
            start = time.perf_counter()
            edges = methods[name].edge_arrays(atoms)
            times[name][k] = time.perf_counter() - start
            found[name] = edges
        mlff_rebuilt[k] = methods["mlff"].rebuilds > before
        n_edges[k] = len(found["mlff"].centers)
        if any(len(edges.centers) != n_edges[k] for edges in found.values()) or (
            k in (0, steps - 1)  # the full edge sets, at both ends of the walk
            and not all(same_edges(edges, found["mlff"]) for edges in found.values())
        ):
            raise AssertionError(f"{n_atoms} atoms, step {k}: the methods' edges differ")
    vesin_rebuilt = _vesin_rebuild_steps(trajectory, SKIN)
    return {
        "n_atoms": n_atoms,
        "n_edges": int(np.median(n_edges)),
        "times": times,
        "rebuilt": {"mlff": mlff_rebuilt, **dict.fromkeys(VESIN_VARIANTS, vesin_rebuilt)},
    }


def summary_rows(result: dict) -> list[dict]:
    times, rebuilt = result["times"], result["rebuilt"]
    base_median = np.median(times["mlff"])
    base_total = times["mlff"].sum()
    rows = []
    for name, t in times.items():
        rows.append(
            {
                "n_atoms": result["n_atoms"],
                "n_edges": result["n_edges"],
                "method": name,
                "rebuilds": int(rebuilt[name].sum()),
                "median_us": 1e6 * np.median(t),
                "rebuild_median_us": 1e6 * np.median(t[rebuilt[name]]),
                "total_ms": 1e3 * t.sum(),
                "median_ratio": np.median(t) / base_median,
                "total_ratio": t.sum() / base_total,
            }
        )
    return rows


def thread_rows(n_atoms: int, rounds: int, seed: int = 0) -> list[dict]:
    """One vesin search (as mlff's ``_vesin_pairs`` runs it) at the cutoff and at cutoff + skin
    with one thread and with vesin's default (every core), timed in turn."""
    atoms = diamond_si(n_atoms)
    atoms.rattle(0.05, seed=seed)
    positions, cell = atoms.positions, atoms.cell.array
    rows = []
    for reach in (CUTOFF, CUTOFF + SKIN):
        lists = {n: vesin.NeighborList(cutoff=reach, full_list=True, n_threads=n) for n in (1, 0)}
        times = {n: [] for n in lists}
        for k in range(rounds + 1):
            for n in (1, 0) if k % 2 else (0, 1):
                start = time.perf_counter()
                lists[n].compute(
                    points=positions, box=cell, periodic=True, quantities="ijSD", copy=False
                )
                if k:  # the first round warms up
                    times[n].append(time.perf_counter() - start)
        one, every = np.median(times[1]), np.median(times[0])
        rows.append(
            {
                "n_atoms": n_atoms,
                "reach": reach,
                "one_us": 1e6 * one,
                "every_us": 1e6 * every,
                "ratio": every / one,
            }
        )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rms", type=float, default=0.01, help="Å per step (default 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", action="store_true", help="also time one search by vesin's thread count"
    )
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    for n_atoms in args.sizes:
        try:
            diamond_si(n_atoms)
        except ValueError as error:
            parser.error(f"--sizes: {error}")

    print(
        f"diamond Si, cutoff {CUTOFF} Å, skin {SKIN} Å, {args.steps} steps of {args.rms} Å rms; "
        f"vesin {vesin.__version__}"
    )
    header = (
        f"{'atoms':>6} {'edges':>7} {'method':<14} {'rebuilds':>8} {'median µs':>10} "
        f"{'rebuild µs':>11} "
        f"{'total ms':>9} {'median/mlff':>12} {'total/mlff':>11}"
    )
    print(header)
    print("-" * len(header))
    for n_atoms in args.sizes:
        for row in summary_rows(compare(n_atoms, args.steps, args.rms, args.seed)):
            print(
                f"{row['n_atoms']:>6} {row['n_edges']:>7} {row['method']:<14} {row['rebuilds']:>8} "
                f"{row['median_us']:>10.1f} {row['rebuild_median_us']:>11.1f} "
                f"{row['total_ms']:>9.2f} {row['median_ratio']:>12.2f} {row['total_ratio']:>11.2f}"
            )
    if args.threads:
        print()
        header = (
            f"{'atoms':>6} {'reach Å':>8} {'1 thread µs':>12} {'all cores µs':>13} {'ratio':>6}"
        )
        print("one vesin search (ijSD, unsorted), median; ratio = all cores / 1 thread")
        print(header)
        print("-" * len(header))
        for n_atoms in args.sizes:
            rounds = max(5, min(200, 200_000 // n_atoms))
            for row in thread_rows(n_atoms, rounds, args.seed):
                print(
                    f"{row['n_atoms']:>6} {row['reach']:>8.1f} {row['one_us']:>12.1f} "
                    f"{row['every_us']:>13.1f} {row['ratio']:>6.2f}"
                )


if __name__ == "__main__":
    main()
