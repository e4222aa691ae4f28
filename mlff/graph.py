"""Neighbour graphs: the one geometric input every site model reads.

Convention (owned here): edges form a *full* list (both i→j and j→i), grouped by centre i in
increasing order, and the edge vector is ``r_ij = x_j - x_i + S_ij · cell`` with ``S_ij`` the
integer image shift. Derivatives of the energy are taken with respect to ``Graph.vectors``;
:mod:`mlff.protocol` turns them into forces and the virial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import vesin
from ase import Atoms

from mlff.elements import species_lookup, species_of
from mlff.geometry import (
    MAX_NEIGHBORS,
    MAX_PERIODIC_IMAGES,
    cell_volume,
    check_atoms,
    periodic_widths,
    search_cell,
)
from mlff.kernels.edges import (
    center_offsets_into,
    group_by_center,
    kept_edges_within,
    pairs_within,
    shift_vectors_into,
    shortest_edge,
)

__all__ = ["Graph", "EdgeArrays", "build_graph", "cell_volume", "check_atoms", "VerletGraphBuilder"]


def _drops_edges(built: float, cutoff: float) -> bool:
    """Whether restricting edges built at ``built`` Å to ``cutoff`` Å can drop any (False: the
    same edges); a larger cutoff is refused, since the edges beyond ``built`` were never
    searched. Both edge types restrict by ``|r|² < cutoff²``, so they keep the same edges."""
    if cutoff > built + 1e-12:
        raise ValueError(
            f"cannot restrict edges built at cutoff {built} Å to a larger cutoff {cutoff} Å; "
            "build them at the largest cutoff of all models"
        )
    return cutoff < built


@dataclass(frozen=True, eq=False)
class Graph:
    """Atoms plus a full neighbour list within ``cutoff``.

    Attributes:
        positions: (n_atoms, 3) Å.
        numbers: (n_atoms,) atomic numbers, int64.
        edge_index: (2, n_edges) int64; row 0 is the centre i, row 1 the neighbour j.
        shifts: (n_edges, 3) integer image shifts S (stored in the float dtype).
        vectors: (n_edges, 3) Å, r_ij; the tensor derivatives are taken against.
        cell: (3, 3) Å, rows are lattice vectors.
        pbc: (3,) bool.
        cutoff: the radius the edge list was built with, Å.
        parent_edges: for a graph made by :meth:`restrict`, (n_edges,) positions of its edges
            in the parent graph; ``None`` otherwise.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    vectors: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    cutoff: float
    parent_edges: torch.Tensor | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def centers(self) -> torch.Tensor:
        """(n_edges,) index i of each edge."""
        return self.edge_index[0]

    @property
    def neighbors(self) -> torch.Tensor:
        """(n_edges,) index j of each edge."""
        return self.edge_index[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.vectors.dtype

    @property
    def device(self) -> torch.device:
        return self.vectors.device

    @property
    def is_3d_periodic(self) -> bool:
        return bool(self.pbc.all())

    def volume(self) -> float:
        """Cell volume, Å^3 (only meaningful for a 3D-periodic graph)."""
        return cell_volume(self.cell.detach().tolist())

    def differentiable(self) -> Graph:
        """A copy whose ``vectors`` is a fresh leaf that requires grad."""
        return replace(self, vectors=self.vectors.detach().requires_grad_(True), _cache={})

    def restrict(self, cutoff: float) -> Graph:
        """The sub-graph of edges shorter than ``cutoff``.

        Its vectors are gathered from this graph's vectors, so gradients flow back to the
        parent. Sub-graphs are cached per cutoff.
        """
        if not _drops_edges(self.cutoff, cutoff):
            return self
        sub = self._cache.get(("restrict", cutoff))
        if sub is None:
            if cutoff <= 0.0:  # e.g. a one-body part: no edge can be inside, skip the norms
                keep = torch.zeros(0, dtype=torch.long, device=self.device)
            else:
                vectors = self.vectors.detach()
                keep = torch.nonzero((vectors * vectors).sum(1) < cutoff * cutoff).squeeze(1)
            sub = replace(
                self,
                edge_index=self.edge_index[:, keep],
                shifts=self.shifts[keep],
                vectors=self.vectors[keep],
                cutoff=float(cutoff),
                parent_edges=keep,
                _cache={"atoms": self.atom_cache()},  # same atoms: per-atom lookups are shared
            )
            self._cache[("restrict", cutoff)] = sub
        return sub

    def atom_cache(self) -> dict:
        """A cache for what depends on the atoms only (e.g. species indices), shared by this
        graph and the sub-graphs :meth:`restrict` makes of it."""
        return self._cache.setdefault("atoms", {})

    def neighbor_slots(self) -> tuple[torch.Tensor, int]:
        """Each edge's position among its centre's edges (n_edges,), and the largest count.

        Lets per-atom sums over neighbours run as batched matrix products on a padded
        (n_atoms, max_neighbors, …) layout. Cached.
        """
        cached = self._cache.get("slots")
        if cached is None:
            centers = self.centers
            counts = torch.bincount(centers, minlength=self.n_atoms)
            starts = torch.cumsum(counts, 0) - counts
            order = torch.argsort(centers, stable=True)
            slots = torch.empty_like(centers)
            slots[order] = (
                torch.arange(self.n_edges, device=centers.device) - starts[centers[order]]
            )
            cached = (slots, int(counts.max()) if self.n_edges else 0)
            self._cache["slots"] = cached
        return cached


class EdgeArrays:
    """A graph as the compiled CPU kernels read it: numpy arrays, no torch tensors.

    Same edges and conventions as :class:`Graph` (full list grouped by centre, r_ij =
    x_j − x_i + S·cell); made by :meth:`VerletGraphBuilder.edge_arrays` for the calculators'
    CPU path, where wrapping a 64-atom step's arrays in tensors and graphs costs as much as
    evaluating it.

    Attributes:
        numbers: (n_atoms,) atomic numbers, int64.
        centers, neighbors: (n_edges,) int64, the i and j of each edge.
        vectors: (n_edges, 3) Å in the evaluation dtype.
        cutoff: Å.
        parent_edges: for arrays made by :meth:`restrict`, (n_edges,) positions of their edges
            in the parent; ``None`` otherwise.
        cache: per-atoms lookups (species), shared with restricted arrays and kept by the
            builder while the atoms' numbers cannot have changed.
    """

    __slots__ = (
        "numbers",
        "centers",
        "neighbors",
        "vectors",
        "cutoff",
        "parent_edges",
        "cache",
        "_shortest",
        "_offsets",
    )

    def __init__(
        self,
        numbers,
        centers,
        neighbors,
        vectors,
        cutoff,
        parent_edges=None,
        cache=None,
        shortest: float | None = None,
        offsets: np.ndarray | None = None,
    ):
        self.numbers, self.centers, self.neighbors, self.vectors = (
            numbers,
            centers,
            neighbors,
            vectors,
        )
        self.cutoff, self.parent_edges = float(cutoff), parent_edges
        self.cache = {} if cache is None else cache
        self._shortest = shortest
        self._offsets = offsets

    @property
    def n_atoms(self) -> int:
        return self.numbers.shape[0]

    @property
    def offsets(self) -> np.ndarray | None:
        """(n_atoms + 1,) int64: where each centre's edges begin (:func:`center_offsets`), from
        the neighbour search where it was known there; ``None`` for edges not grouped by centre."""
        if self._offsets is None:
            offsets = center_offsets(self.centers, self.n_atoms)
            self._offsets = False if offsets is None else offsets  # False: known not to be grouped
        return None if self._offsets is False else self._offsets

    def species(self, elements: tuple[str, ...], owner: str) -> np.ndarray:
        """(n_atoms,) int64 index of each atom's element in ``elements``, cached with the atoms
        (the builder keeps the cache while the atomic numbers cannot change); raises naming
        any element ``owner`` lacks."""
        key = ("species", elements)
        species = self.cache.get(key)
        if species is None:
            table = species_lookup(elements)
            species = species_of(torch.from_numpy(self.numbers), table, elements, owner).numpy()
            self.cache[key] = species
        return species

    @property
    def shortest(self) -> float:
        """The shortest edge, Å (inf without edges): from the neighbour search where it was
        known there, else measured once."""
        if self._shortest is None:
            self._shortest = float(shortest_edge(self.vectors))
        return self._shortest

    def restrict(self, cutoff: float) -> EdgeArrays:
        """The edges shorter than ``cutoff`` (as :meth:`Graph.restrict`)."""
        if not _drops_edges(self.cutoff, cutoff):
            return self
        if cutoff <= (self._shortest or 0.0):  # views, not copies: a one-body part or a ZBL
            # core asks for this every step, and the shortest edge is known from the search
            return EdgeArrays(
                self.numbers,
                self.centers[:0],
                self.neighbors[:0],
                self.vectors[:0],
                cutoff,
                parent_edges=self.centers[:0],
                cache=self.cache,
                shortest=np.inf,
            )
        keep = np.flatnonzero(np.einsum("ij,ij->i", self.vectors, self.vectors) < cutoff * cutoff)
        return EdgeArrays(
            self.numbers,
            self.centers[keep],
            self.neighbors[keep],
            self.vectors[keep],
            cutoff,
            parent_edges=keep,
            cache=self.cache,
        )


#: vesin refuses cutoffs at or below 1e-6 Å: a shorter search runs at this radius and is
#: filtered (any pair it finds overlaps, which the caller then reports).
_VESIN_MIN_CUTOFF = 1e-5


def _vesin_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float):
    """i, j (int64), shifts S (int64), r_ij (float64) for all pairs closer than ``cutoff``,
    grouped by centre in increasing order (:func:`group_by_center`); ``cell`` is a
    :func:`~mlff.geometry.search_cell`.

    vesin sees the positions wrapped into the cell along periodic directions (it keeps cell
    indices and shifts in int32, which an atom 2³¹ widths away overflows, dropping edges), and
    the shifts are put back in the caller's frame. With an open direction, the atoms are
    searched in groups separated by gaps wider than the cutoff normal to the periodic vectors,
    which no edge can cross: vesin's cell list otherwise visits every cell along the open
    directions from every cell (minutes for an atom 10⁵ Å above a slab), and divides by zero
    past about 10⁵ cells (:func:`_vesin_cell_counts`)."""
    if cutoff <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3), dtype=np.int64), np.zeros((0, 3))
    widths = periodic_widths(cell, pbc)
    _check_image_count(widths, pbc, cutoff)
    # Coordinates along the search cell's rows: fractional along periodic ones, Å along the
    # open ones (unit vectors orthogonal to the periodic ones).
    fractional = positions @ np.linalg.inv(cell)
    offsets = np.zeros(positions.shape, dtype=np.int64)  # (n_atoms, 3) lattice vectors wrapped away
    if pbc.any():
        offsets[:, pbc] = np.floor(fractional[:, pbc]).astype(np.int64)
        positions = positions - offsets.astype(np.float64) @ cell
        fractional = fractional - offsets
    groups = _separated_groups(positions, cell[~pbc], cutoff) if not pbc.all() else []
    if len(groups) <= 1:  # all atoms in one group, in their order: vesin's indices are theirs
        groups = [np.arange(len(positions))]
    for group in groups:
        _check_group(positions[group], fractional[group], widths, pbc, cutoff)
    reach = max(cutoff, _VESIN_MIN_CUTOFF)
    single = len(groups) == 1
    found, searches = [], []
    for group in groups:
        nl = vesin.NeighborList(cutoff=reach, full_list=True, n_threads=_vesin_threads(len(group)))
        searches.append(nl)  # copy=False: its buffers back the views below until the regrouping
        # vesin returns r_ij = x_j - x_i + S·cell in float64 ("D"), so float32 graphs do not
        # lose precision far from the origin.
        i, j, shifts, vectors = nl.compute(
            points=positions if single else positions[group],
            box=cell,
            periodic=pbc.tolist(),
            quantities="ijSD",
            copy=False,
        )
        # vesin's indices are uint64 (size_t): reinterpret them, they are far below 2⁶³.
        i, j = i.view(np.int64), j.view(np.int64)
        found.append((i, j, shifts, vectors) if single else (group[i], group[j], shifts, vectors))
    pairs = found[0] if single else [np.concatenate(part) for part in zip(*found, strict=True)]
    return group_by_center(
        *pairs, offsets, len(positions), cutoff * cutoff if reach > cutoff else np.inf
    )


#: Below this many atoms vesin searches on one thread: on the 64–512-atom cells of MD, more
#: threads did not pay for their hand-offs (``benchmark/neighbour_lists.py --threads``). Larger
#: searches keep vesin's default, every core, for many-core machines.
_VESIN_SERIAL_ATOMS = 2048


def _vesin_threads(n_atoms: int) -> int:
    """vesin's ``n_threads`` for a search over ``n_atoms`` points: 1 for small systems, else
    0 (vesin's default: ``OMP_NUM_THREADS`` or all cores)."""
    return 1 if n_atoms < _VESIN_SERIAL_ATOMS else 0


def _check_group(
    positions: np.ndarray,
    fractional: np.ndarray,
    widths: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
) -> None:
    """Refuse a group of atoms (wrapped, from one gap-separated group; ``fractional`` their
    coordinates along the search cell's rows, ``widths`` its :func:`periodic_widths`) that
    vesin cannot bin or that packs more than MAX_NEIGHBORS neighbours per atom within the
    cutoff (memory for the edges would run out long before the search ends)."""
    neighbours = _neighbors_per_atom(fractional, widths, pbc, cutoff)
    if neighbours > MAX_NEIGHBORS:
        raise ValueError(
            f"{len(positions)} atoms are packed so densely (cell widths "
            f"{widths.round(4).tolist()} Å, pbc {pbc.tolist()}) that each would have about "
            f"{neighbours:.3g} neighbours within the cutoff {cutoff} Å; at most "
            f"{MAX_NEIGHBORS:.0e} are accepted. Check that the cell and positions are in Å"
        )
    if _vesin_cell_counts(positions, widths, pbc, cutoff).min() < 1:
        raise ValueError(
            f"the neighbour search cannot bin {len(positions)} atoms spanning "
            f"{np.ptp(positions, axis=0).round(1).tolist()} Å with a cell of widths "
            f"{widths.round(3).tolist()} Å (pbc {pbc.tolist()}) at cutoff {cutoff} Å: one "
            "direction is over 10^5 cutoffs longer than the others; make a long periodic "
            "direction non-periodic or bring far atoms closer"
        )


def _neighbors_per_atom(
    fractional: np.ndarray, widths: np.ndarray, pbc: np.ndarray, cutoff: float
) -> float:
    """An estimate from above of the neighbours per atom within ``cutoff``: the atoms' count
    times the sphere's volume over the volume they and their images fill near it. Along each
    direction of the search cell that is its width where images are closer than the cutoff,
    else the atoms' extent there, at least the cutoff."""
    extents = np.ptp(fractional, axis=0) if len(fractional) > 1 else np.zeros(3)
    lengths = []
    for d in range(3):
        extent = extents[d] * widths[d] if pbc[d] else extents[d]  # open rows are unit vectors
        lengths.append(widths[d] if widths[d] <= cutoff else min(widths[d], max(extent, cutoff)))
    return len(fractional) * (4.0 / 3.0) * math.pi * cutoff**3 / float(np.prod(lengths))


def _check_image_count(widths: np.ndarray, pbc: np.ndarray, cutoff: float) -> None:
    """Refuse a periodic cell (``widths`` from :func:`periodic_widths`) so thin that one pair
    has more than MAX_PERIODIC_IMAGES images within ``cutoff``: the search would run for
    minutes or overflow."""
    images = np.prod([2 * np.ceil(cutoff / widths[ax]) + 1 for ax in range(3) if pbc[ax]])
    if images > MAX_PERIODIC_IMAGES:
        raise ValueError(
            f"the periodic cell is {widths[pbc].tolist()} Å thick along its periodic directions "
            f"{np.flatnonzero(pbc).tolist()}, so each pair of atoms has about {images:.3g} images "
            f"within the cutoff {cutoff} Å; at most {MAX_PERIODIC_IMAGES:.0e} are searched. "
            "Check the cell (units are Å) or use a supercell"
        )


#: vesin's bound on the number of cells of its CPU cell list (MAX_NUMBER_OF_CELLS).
_VESIN_MAX_CELLS = 1e5


def _vesin_cell_counts(
    positions: np.ndarray, widths: np.ndarray, pbc: np.ndarray, cutoff: float
) -> np.ndarray:
    """(3,) the cell counts vesin's CPU cell list (``CellList::CellList`` in vesin's
    cpu_cell_list.cpp) chooses for this input. When the total exceeds its bound, vesin rescales
    the counts keeping their ratios and truncates; for a very elongated box a count reaches 0
    and vesin divides by it (SIGFPE). Periodic lengths are the cell's ``widths``, open ones the
    atoms' span along the Cartesian axis, as there."""
    span = np.ptp(positions, axis=0)
    span = np.where(span < 1e-6, 1.0, span)
    lengths = np.where(pbc, widths, np.maximum(1.01 * span, 1.0))
    n = np.maximum(np.trunc(lengths / cutoff), 1.0)
    if n.prod() > _VESIN_MAX_CELLS:
        ratio_xy, ratio_yz = n[0] / n[1], n[1] / n[2]
        n[2] = np.trunc(np.cbrt(_VESIN_MAX_CELLS / (ratio_xy * ratio_yz * ratio_yz)))
        n[1] = np.trunc(ratio_yz * n[2])
        n[0] = np.trunc(ratio_xy * n[1])
    return n


def _separated_groups(
    positions: np.ndarray, open_directions: np.ndarray, cutoff: float
) -> list[np.ndarray]:
    """Indices of the groups of atoms that gaps wider than ``cutoff`` along the open directions
    (unit vectors orthogonal to the periodic ones, so periodic images keep the gaps) separate."""
    groups = [np.arange(len(positions))]
    for direction in open_directions:
        split = []
        for group in groups:
            along = positions[group] @ direction
            order = np.argsort(along, kind="stable")
            cuts = np.flatnonzero(np.diff(along[order]) >= cutoff) + 1
            split.extend(group[part] for part in np.split(order, cuts))
        groups = split
    return groups


def _shift_vectors(shifts: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """S·cell (n_pairs, 3) Å of (n_pairs, 3) image shifts: computed once per list and cell, so
    a step on a kept list adds each pair's image offset in one addition per component.

    A compiled loop, not ``shifts @ cell``: numpy hands that thin product to a threaded BLAS,
    whose threads stall whenever another process holds a core (a strained NPT step then took
    as long as a rebuild)."""
    vectors = np.empty((len(shifts), 3))  # (n_pairs, 3)
    shift_vectors_into(
        np.ascontiguousarray(shifts), np.ascontiguousarray(cell, np.float64), vectors
    )
    return vectors


def center_offsets(centers: np.ndarray, n_atoms: int) -> np.ndarray | None:
    """(n_atoms + 1,) int64: where each centre's edges begin in ``centers`` (n_edges,), if the
    edges are grouped by centre in increasing order (the graph convention); ``None`` if not."""
    start = np.empty(n_atoms + 1, dtype=np.int64)
    return (
        start if center_offsets_into(np.ascontiguousarray(centers, dtype=np.int64), start) else None
    )


#: Squared edge length (Å²) below which two atoms overlap.
_OVERLAP2 = 1e-12


def _check_no_overlap(edge_index, shifts, vectors64) -> None:
    squared = np.einsum("ij,ij->i", vectors64, vectors64)  # (n_edges,)
    if squared.size and squared.min() < _OVERLAP2:
        k = int(squared.argmin())
        raise ValueError(
            f"atoms {int(edge_index[0, k])} and {int(edge_index[1, k])} (image shift "
            f"{np.rint(shifts[k]).astype(int).tolist()}) are {np.sqrt(squared[k]):.2e} Å apart; "
            "atoms must not overlap"
        )


def _graph_from_pairs(atoms, cutoff, edge_index, shifts, vectors64, dtype, device) -> Graph:
    """The Graph of checked pairs (see :func:`_check_no_overlap`)."""
    device = torch.device(device)
    return Graph(
        positions=torch.as_tensor(atoms.positions, dtype=dtype, device=device),
        numbers=torch.as_tensor(atoms.numbers.astype(np.int64), device=device),
        edge_index=torch.as_tensor(edge_index, device=device),
        shifts=torch.as_tensor(shifts, dtype=dtype, device=device),
        vectors=torch.as_tensor(vectors64, dtype=dtype, device=device),
        cell=torch.as_tensor(atoms.cell.array, dtype=dtype, device=device),
        pbc=torch.as_tensor(np.asarray(atoms.pbc, dtype=bool), device=device),
        cutoff=float(cutoff),
    )


class VerletGraphBuilder:
    """Graphs for successive configurations of one system, from a Verlet list with a skin.

    The pair list is built by vesin at ``cutoff + skin`` and reused while no pair can have
    come inside the cutoff unseen; each call only recomputes the edge vectors (from the
    current positions and cell) and keeps the edges within ``cutoff``. Since the build, with
    the cell strained as ``cell = cell₀ (I + E)`` and each atom displaced by ``u_a`` beyond
    what the strain carries (``x_a = s_a cell + u_a``, s_a its fractional position at the
    build), every pair vector is ``r = r₀ (I + E) + u_j − u_i``. A pair left out at the build
    had ``|r₀| > cutoff + skin``, so none can be inside the cutoff while
    ``2 max_a |u_a| + (cutoff + skin) ‖E‖ ≤ skin``; the list is reused until then. With a
    fixed cell that is the usual "no atom moved more than skin/2"; under NPT the list also
    survives the cell changes, and motion that follows the cell costs no skin. A change of
    pbc, atomic numbers or atom count rebuilds the list. The cell here is the
    :func:`~mlff.geometry.search_cell`, so a non-periodic direction's vector (zero, or
    changed) never enters. The graphs are identical to :func:`build_graph`'s up to edge order.

    Why not vesin's own skin (``vesin.NeighborList(skin=...)``), which returns the same pairs:
    each of its calls filters the candidates, sorts the survivors by centre (or leaves that to
    the caller), and copies every output out through ctypes, and mlff then still needs the
    centre offsets and the shortest edge; here one compiled pass (:func:`kept_edges_within`)
    does all of it, several times faster per kept step at every MD size measured, and the
    whole run with it (``benchmark/neighbour_lists.py``). A rebuild is one vesin search at
    cutoff + skin either way; here it costs a little more on small cells, for the input checks
    around the search. Under NPT vesin also charges the box corners' displacement and the
    atoms' motion with the cell to the skin, so a breathing cell rebuilds its list, where the
    strain criterion above keeps this one.

    Args:
        cutoff: Å.
        skin: Å; 0 rebuilds every call.
    """

    def __init__(
        self,
        cutoff: float,
        skin: float = 0.5,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ):
        if not (np.isfinite(cutoff) and cutoff >= 0):
            raise ValueError(f"cutoff must be a non-negative number of Å, got {cutoff!r}")
        if not (np.isfinite(skin) and skin >= 0):
            raise ValueError(f"skin must be a non-negative distance in Å, got {skin!r}")
        self.cutoff, self.skin, self.dtype, self.device = float(cutoff), float(skin), dtype, device
        self._state: dict | None = None
        self.rebuilds = 0

    def _needs_rebuild(
        self, atoms: Atoms, positions: np.ndarray, same_cell: bool, search: np.ndarray
    ) -> bool:
        state = self._state
        if state is None or self.skin == 0.0 or self.cutoff == 0.0:
            return True
        if (
            len(positions) != len(state["positions"])
            or not np.array_equal(atoms.numbers, state["numbers"])
            or not np.array_equal(atoms.pbc, state["pbc"])
        ):
            return True
        if same_cell:
            moved, strain = positions - state["positions"], 0.0
        else:
            strain_matrix = state["inverse_cell"] @ (
                search - state["search_cell"]
            )  # E: cell = cell₀ (I + E)
            strain = float(np.sqrt(np.einsum("ij,ij->", strain_matrix, strain_matrix)))  # ≥ ‖E‖₂
            moved = positions - state["fractional"] @ search  # u_a: what the strain does not carry
        largest = float(np.einsum("ij,ij->i", moved, moved).max()) if len(moved) else 0.0
        return 2.0 * np.sqrt(largest) + (self.cutoff + self.skin) * strain > self.skin

    def _pairs(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
        """Edge index (2, n) int64, the edges' positions (n,) in the kept list (their shifts
        are ``self._state["shifts"]`` there), vectors (n, 3) float64, the shortest edge (Å) and
        the centre offsets (n_atoms + 1,) of the current configuration, from the kept list or a
        new one."""
        check_atoms(atoms)
        positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
        cell = np.array(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        state = self._state
        same_cell = (
            state is not None
            and np.array_equal(cell, state["cell"])
            and np.array_equal(pbc, state["pbc"])
        )
        # Invertible: check_atoms refused degenerate periodic vectors.
        search = state["search_cell"] if same_cell else search_cell(cell, pbc)
        if self._needs_rebuild(atoms, positions, same_cell, search):
            reach = self.cutoff + self.skin if self.cutoff > 0 else 0.0
            i, j, shifts, vectors = _vesin_pairs(positions, search, pbc, reach)
            inverse = np.linalg.inv(search)
            self._state = {
                "positions": positions.copy(),
                "numbers": atoms.numbers.copy(),
                "pbc": pbc.copy(),
                "cell": cell,
                "search_cell": search,
                "inverse_cell": inverse,
                "fractional": positions @ inverse,
                "j": j,
                "shifts": shifts.astype(np.float64),  # cast once per build
                "pair_start": np.searchsorted(i, np.arange(len(positions) + 1)),  # i is sorted
                "shift_vectors": _shift_vectors(shifts, search),
                "atom_cache": {},  # species lookups: the numbers are fixed until the next build
            }
            self.rebuilds += 1
        state = self._state
        n_pairs = len(state["j"])
        edge_index = np.empty((2, n_pairs), dtype=np.int64)
        vectors = np.empty((n_pairs, 3))
        pairs = np.empty(n_pairs, dtype=np.int64)
        if np.array_equal(cell, state["cell"]):
            shift_vectors = state["shift_vectors"]
        else:  # a strained cell (NPT): every step, into one buffer kept with the list
            shift_vectors = state.get("strained_shift_vectors")
            if shift_vectors is None:
                shift_vectors = state["strained_shift_vectors"] = np.empty((n_pairs, 3))
            shift_vectors_into(state["shifts"], search, shift_vectors)
        offsets = np.empty(len(positions) + 1, dtype=np.int64)
        n, shortest = pairs_within(
            positions,
            state["pair_start"],
            state["j"],
            shift_vectors,
            self.cutoff**2,
            edge_index[0],
            edge_index[1],
            vectors,
            pairs,
            offsets,
        )
        edge_index, kept, vectors = np.ascontiguousarray(edge_index[:, :n]), pairs[:n], vectors[:n]
        if shortest < _OVERLAP2:  # the lengths are known already: look for the culprit only then
            _check_no_overlap(edge_index, state["shifts"][kept], vectors)
        return edge_index, kept, vectors, float(np.sqrt(shortest)), offsets

    def __call__(self, atoms: Atoms) -> Graph:
        edge_index, kept, vectors, _, _ = self._pairs(atoms)
        shifts = self._state["shifts"][kept]  # (n_edges, 3)
        return _graph_from_pairs(
            atoms, self.cutoff, edge_index, shifts, vectors, self.dtype, self.device
        )

    def edge_arrays(self, atoms: Atoms) -> EdgeArrays:
        """The same edges as :meth:`__call__`, as numpy arrays for the CPU kernels, with the
        vectors in the builder's dtype (CPU builders only).

        An MD step on a kept list is one compiled pass (:func:`kept_edges_within`); anything
        else (a rebuild, a changed cell, bad input) takes the general path of ``__call__``."""
        dtype = np.float32 if self.dtype == torch.float32 else np.float64
        state = self._state
        if state is not None and self.skin > 0.0 and self.cutoff > 0.0 and isinstance(atoms, Atoms):
            positions = atoms.positions
            if positions.dtype == np.float64 and positions.flags.c_contiguous:
                n, shortest, centers, neighbors, vectors, offsets = kept_edges_within(
                    positions,
                    atoms.numbers,
                    atoms.pbc,
                    atoms.cell.array,
                    state["positions"],
                    state["numbers"],
                    state["pbc"],
                    state["cell"],
                    state["pair_start"],
                    state["j"],
                    state["shift_vectors"],
                    self.cutoff**2,
                    0.25 * self.skin**2,
                )
                if n >= 0 and shortest >= _OVERLAP2:
                    return EdgeArrays(
                        state["numbers"],
                        centers,
                        neighbors,
                        vectors.astype(dtype, copy=False),
                        self.cutoff,
                        cache=state["atom_cache"],
                        shortest=math.sqrt(shortest),
                        offsets=offsets,
                    )
        edge_index, _, vectors, shortest, offsets = self._pairs(atoms)
        return EdgeArrays(
            self._state["numbers"],
            edge_index[0],
            edge_index[1],
            vectors.astype(dtype, copy=False),
            self.cutoff,
            cache=self._state["atom_cache"],
            shortest=shortest,
            offsets=offsets,
        )


def build_graph(
    atoms: Atoms,
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Graph:
    """Build the full neighbour graph of ``atoms`` within ``cutoff`` (Å) with vesin.

    Works for periodic, mixed (slab) and open boundaries, triclinic cells, and cells smaller
    than the cutoff (an atom may see several images of itself, never itself at zero shift).
    """
    check_atoms(atoms)
    if not (np.isfinite(cutoff) and cutoff >= 0):
        raise ValueError(f"cutoff must be a non-negative number of Å, got {cutoff!r}")
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    i, j, shifts, vectors = _vesin_pairs(positions, search_cell(atoms.cell.array, pbc), pbc, cutoff)
    edge_index = np.stack([i, j])
    _check_no_overlap(edge_index, shifts, vectors)
    return _graph_from_pairs(atoms, cutoff, edge_index, shifts, vectors, dtype, device)
