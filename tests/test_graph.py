import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from helpers import STRUCTURES

from mlff import build_graph


def _edge_set(i, j, shifts):
    return sorted(
        zip(
            np.asarray(i).tolist(),
            np.asarray(j).tolist(),
            map(tuple, np.rint(shifts).astype(int).tolist()),
            strict=True,
        )
    )


@pytest.mark.parametrize("name", sorted(STRUCTURES))
@pytest.mark.parametrize("cutoff", [2.6, 5.0, 7.5])
def test_edges_match_ase_neighbor_list(name, cutoff):
    atoms = STRUCTURES[name]()
    graph = build_graph(atoms, cutoff)
    i, j, shifts, dist_vec = neighbor_list("ijSD", atoms, cutoff)
    assert graph.n_edges == len(i)
    assert _edge_set(graph.centers, graph.neighbors, graph.shifts.numpy()) == _edge_set(
        i, j, shifts
    )
    # r_ij = x_j - x_i + S·cell, the sign convention everything else relies on.
    pos, cell = atoms.positions, atoms.cell.array
    expected = pos[graph.neighbors] - pos[graph.centers] + graph.shifts.numpy() @ cell
    np.testing.assert_allclose(graph.vectors.numpy(), expected, atol=1e-12)
    assert np.all(np.linalg.norm(graph.vectors.numpy(), axis=1) < cutoff)


def _interleaved_methanes() -> Atoms:
    """Two methanes 20 Å apart (open boundaries), their atoms' indices interleaved."""
    atoms = molecule("CH4") + molecule("CH4")
    atoms.positions[5:] += [0.0, 0.0, 20.0]
    atoms.rattle(0.05, seed=6)
    return atoms[[0, 5, 1, 6, 2, 7, 3, 8, 4, 9]]


def _slab_with_far_adatoms() -> Atoms:
    """A slab (periodic in-plane) with two atoms 30 Å above it, listed first."""
    slab = STRUCTURES["si-slab"]()
    top = slab.positions[:, 2].max()
    adatoms = Atoms("Si2", positions=[[0.5, 0.5, top + 30.0], [1.0, 2.5, top + 32.0]])
    atoms = adatoms + slab
    atoms.set_cell(slab.cell)
    atoms.pbc = slab.pbc
    return atoms


@pytest.mark.parametrize(
    "make",
    [
        *(STRUCTURES[name] for name in sorted(STRUCTURES)),
        _interleaved_methanes,
        _slab_with_far_adatoms,
    ],
    ids=[*sorted(STRUCTURES), "interleaved-methanes", "slab-with-far-adatoms"],
)
def test_edges_are_grouped_by_centre_in_increasing_order(make):
    """The convention the kernels read: one contiguous run of edges per centre, in atom order,
    whether the search ran as one (vesin sorts) or in gap-separated groups (merged here)."""
    atoms = make()
    graph = build_graph(atoms, 5.0)
    centers = graph.centers.numpy()
    assert np.all(np.diff(centers) >= 0)
    i, j, shifts = neighbor_list("ijS", atoms, 5.0)
    assert _edge_set(centers, graph.neighbors, graph.shifts.numpy()) == _edge_set(i, j, shifts)


def test_small_cell_sees_its_own_images():
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom, cell far below the cutoff
    graph = build_graph(atoms, 6.0)
    assert graph.n_atoms == 1
    assert graph.n_edges == len(neighbor_list("i", atoms, 6.0)) > 50
    assert (graph.centers == graph.neighbors).all()
    assert not (graph.shifts == 0).all(dim=1).any(), (
        "an atom must never be its own neighbour at zero shift"
    )


def test_full_list_is_symmetric():
    graph = build_graph(STRUCTURES["triclinic-sic"](), 5.0)
    forward = _edge_set(graph.centers, graph.neighbors, graph.shifts.numpy())
    backward = _edge_set(graph.neighbors, graph.centers, -graph.shifts.numpy())
    assert forward == sorted(backward)


def test_restrict_keeps_short_edges_and_passes_gradients():
    graph = build_graph(STRUCTURES["rattled-si"](), 5.0).differentiable()
    sub = graph.restrict(3.0)
    lengths = torch.linalg.vector_norm(graph.vectors.detach(), dim=1)
    assert sub.n_edges == int((lengths < 3.0).sum())
    assert torch.equal(sub.vectors.detach(), graph.vectors.detach()[sub.parent_edges])
    (grad,) = torch.autograd.grad(sub.vectors.sum(), graph.vectors)
    assert grad[sub.parent_edges].eq(1).all() and grad.sum() == 3 * sub.n_edges
    assert graph.restrict(3.0) is sub
    with pytest.raises(ValueError, match="larger cutoff"):
        graph.restrict(6.0)


def test_neighbor_slots_index_each_centre_densely():
    graph = build_graph(STRUCTURES["si-slab"](), 4.0)
    slots, width = graph.neighbor_slots()
    counts = torch.bincount(graph.centers, minlength=graph.n_atoms)
    assert width == int(counts.max())
    pairs = set(zip(graph.centers.tolist(), slots.tolist(), strict=True))
    assert len(pairs) == graph.n_edges
    for i in range(graph.n_atoms):
        assert sorted(slots[graph.centers == i].tolist()) == list(range(int(counts[i])))


@pytest.mark.parametrize(
    "atoms, message",
    [
        (Atoms(), "zero atoms"),
        (Atoms("Si2", positions=[[0, 0, 0], [np.nan, 0, 0]]), r"atoms \[1\].*not finite"),
        (Atoms("Si", positions=[[0, 0, np.inf]]), "not finite"),
        (Atoms("Si", cell=[[1, 0, 0], [0, 1, 0], [0, 0, 0]], pbc=True), "zero length"),
    ],
)
def test_bad_atoms_are_refused(atoms, message):
    with pytest.raises(ValueError, match=message):
        build_graph(atoms, 5.0)


def test_position_check_is_exact_under_strict_floating_point_errors():
    """Positions are checked with one reduction; huge, infinite or mixed +inf/-inf positions
    must neither raise a floating-point error nor hide the bad atoms."""
    from mlff.graph import check_atoms

    with np.errstate(all="raise"):
        check_atoms(Atoms("H2", positions=[[1e8, 0, 0], [-1e8, 0, 0]]))
        with pytest.raises(ValueError, match=r"atoms \[0, 1\] lie 1e\+308 Å"):
            check_atoms(Atoms("H2", positions=[[1e308, 0, 0], [-1e308, 0, 0]]))
        with pytest.raises(ValueError, match=r"atoms \[0, 1\] are not finite"):
            check_atoms(Atoms("H2", positions=[[np.inf, 0, 0], [-np.inf, 0, 0]]))


@pytest.mark.parametrize("cutoff", [-1.0, float("nan"), float("inf")])
def test_bad_cutoff_is_refused(cutoff):
    with pytest.raises(ValueError, match="cutoff"):
        build_graph(STRUCTURES["methane"](), cutoff)


def test_dtype_and_device_are_honoured():
    graph = build_graph(STRUCTURES["methane"](), 3.0, dtype=torch.float32)
    assert graph.vectors.dtype == torch.float32 and graph.positions.dtype == torch.float32
    assert graph.edge_index.dtype == torch.long


def _graph_edges(graph):
    shifts = np.rint(graph.shifts.numpy()).astype(int)
    return {
        (int(i), int(j), *map(int, s))
        for (i, j), s in zip(graph.edge_index.T.tolist(), shifts, strict=True)
    }


@pytest.mark.parametrize("repeat", [1, 2])
def test_verlet_builder_matches_fresh_lists_along_a_trajectory(repeat):
    from mlff.graph import VerletGraphBuilder

    # repeat 1: cell < cutoff + skin
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    builder = VerletGraphBuilder(4.0, skin=0.6)
    rng = np.random.default_rng(0)
    for _ in range(40):
        atoms.positions += rng.normal(0, 0.04, atoms.positions.shape)  # a random walk: rebuilds
        graph, fresh = builder(atoms), build_graph(atoms, 4.0)
        assert _graph_edges(graph) == _graph_edges(fresh)
        order = np.lexsort(graph.edge_index.numpy()[::-1])
        ref_order = np.lexsort(fresh.edge_index.numpy()[::-1])
        if repeat == 2:  # one image per pair: vectors compare edge by edge after sorting
            assert torch.allclose(graph.vectors[order], fresh.vectors[ref_order], atol=1e-12)
    assert 1 < builder.rebuilds < 40


def _edge_order(graph):
    """The order that sorts a graph's edges by (i, j, S)."""
    keys = np.column_stack([graph.edge_index.numpy().T, np.rint(graph.shifts.numpy())])
    return np.lexsort(keys.T[::-1])


@pytest.mark.parametrize("repeat, scale_atoms", [(1, True), (2, True), (2, False)])
def test_verlet_builder_follows_a_changing_cell(repeat, scale_atoms):
    """NPT-like: the cell and the atoms move each step (triclinic strain; the atoms follow the
    cell or stay put); every graph holds exactly the pairs and vectors of a fresh list, and
    the list survives most steps."""
    from mlff.graph import VerletGraphBuilder

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    builder = VerletGraphBuilder(4.0, skin=0.5)
    rng = np.random.default_rng(1)
    for _ in range(60):
        strain = np.eye(3) + rng.normal(0, 0.002, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=scale_atoms)
        atoms.positions += rng.normal(0, 0.01, atoms.positions.shape)
        graph, fresh = builder(atoms), build_graph(atoms, 4.0)
        assert _graph_edges(graph) == _graph_edges(fresh)
        assert torch.allclose(
            graph.vectors[_edge_order(graph)], fresh.vectors[_edge_order(fresh)], atol=1e-12
        )
        assert torch.allclose(graph.cell, fresh.cell)
    assert 1 < builder.rebuilds < 30


@pytest.mark.parametrize(
    "edge, factor", [(3.0, 0.995), (7.0, 0.99)], ids=["small-cell", "compressed-box"]
)
def test_verlet_builder_sees_new_images_as_the_cell_shrinks(edge, factor):
    """One atom in a shrinking cube: pairs with image shifts never listed before come inside
    the cutoff, and the list must notice from the strain alone."""
    from mlff.graph import VerletGraphBuilder

    atoms = Atoms("Si", positions=[[0.1, 0.2, 0.3]], cell=np.eye(3) * edge, pbc=True)
    builder = VerletGraphBuilder(5.0, skin=1.0)
    for step in range(40):
        atoms.set_cell(atoms.cell.array * factor, scale_atoms=True)
        assert _graph_edges(builder(atoms)) == _graph_edges(build_graph(atoms, 5.0)), step
    assert builder.rebuilds > 1


def test_verlet_builder_rebuilds_on_cell_and_species_changes():
    from mlff.graph import VerletGraphBuilder

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    builder = VerletGraphBuilder(4.0, skin=0.5)
    builder(atoms)
    builder(atoms)
    assert builder.rebuilds == 1
    atoms.set_cell(atoms.cell * 1.002, scale_atoms=True)  # within the skin: the list is kept
    assert _graph_edges(builder(atoms)) == _graph_edges(build_graph(atoms, 4.0))
    assert builder.rebuilds == 1
    atoms.set_cell(atoms.cell * 1.15, scale_atoms=True)  # beyond it: rebuilt
    assert _graph_edges(builder(atoms)) == _graph_edges(build_graph(atoms, 4.0))
    assert builder.rebuilds == 2
    atoms.numbers[0] = 29 if atoms.numbers[0] != 29 else 28
    builder(atoms)
    assert builder.rebuilds == 3
    with pytest.raises(ValueError, match="skin"):
        VerletGraphBuilder(4.0, skin=-1.0)


def _edge_vectors(centers, neighbors, vectors):
    """(i, j, vector to 1e-9 Å) of every edge: the pairs and their images, order-free."""
    return sorted(
        zip(
            np.asarray(centers).tolist(),
            np.asarray(neighbors).tolist(),
            map(tuple, np.round(np.asarray(vectors), 9).tolist()),
            strict=True,
        )
    )


@pytest.mark.parametrize("repeat", [1, 2])
def test_edge_arrays_follow_a_trajectory_with_cell_species_and_count_changes(repeat):
    """The calculators' CPU path (one compiled pass on a kept list, the general path otherwise)
    gives a fresh list's edges at every step: a random walk with rebuilds, a strained cell,
    a changed element and a changed atom count."""
    from mlff.graph import VerletGraphBuilder

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    builder = VerletGraphBuilder(4.0, skin=0.6)
    general = []  # steps that took the general path
    general_path = builder._pairs
    builder._pairs = lambda a: (general.append(1), general_path(a))[1]
    rng = np.random.default_rng(2)
    for step in range(60):
        if step == 20:
            atoms.set_cell(
                atoms.cell.array @ (np.eye(3) + rng.normal(0, 0.003, (3, 3))), scale_atoms=True
            )
        if step == 30:
            atoms.numbers[1] = 6
        if step == 40:
            atoms = atoms.repeat((2, 1, 1)) if repeat == 1 else atoms[:-1]
        if step == 50:
            atoms.pbc = [True, False, True]
        # rebuilds between the changes too
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        edges, fresh = builder.edge_arrays(atoms), build_graph(atoms, 4.0)
        assert _edge_vectors(edges.centers, edges.neighbors, edges.vectors) == _edge_vectors(
            fresh.centers, fresh.neighbors, fresh.vectors
        ), step
        np.testing.assert_array_equal(edges.numbers, atoms.numbers)
        assert np.all(np.diff(edges.centers) >= 0)  # grouped by centre, as the kernels read them
        lengths = np.linalg.norm(edges.vectors, axis=1)
        # the ZBL core checks read it
        assert edges.shortest == pytest.approx(lengths.min(), rel=1e-14), step
        sub = edges.restrict(2.4)
        assert sub.shortest == (
            pytest.approx(lengths.min(), rel=1e-14) if len(sub.centers) else np.inf
        )
        assert edges.restrict(0.0).shortest == np.inf
        counts = np.bincount(edges.centers, minlength=len(atoms))  # where each centre's edges begin
        np.testing.assert_array_equal(edges.offsets, np.concatenate([[0], np.cumsum(counts)]))
        np.testing.assert_array_equal(
            sub.offsets,
            np.concatenate([[0], np.cumsum(np.bincount(sub.centers, minlength=len(atoms)))]),
        )
    assert 6 < builder.rebuilds < 50
    assert builder.rebuilds <= len(general) < 40  # most steps were one pass on the kept list


def test_edge_arrays_refuse_bad_positions_on_a_kept_list():
    from mlff.graph import VerletGraphBuilder

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    builder = VerletGraphBuilder(4.0, skin=5.0)  # so the overlap below is reached within skin/2
    builder.edge_arrays(atoms)
    moved = atoms.copy()
    moved.positions[3] = np.nan
    with pytest.raises(ValueError, match=r"positions of atoms \[3\] are not finite"):
        builder.edge_arrays(moved)
    moved = atoms.copy()
    moved.positions[1] = moved.positions[0] + 1e-8  # 2.35 Å: within skin/2, onto atom 0
    with pytest.raises(ValueError, match="must not overlap"):
        builder.edge_arrays(moved)
    close = atoms.copy()
    close.positions[0] += [0.1, 0.0, 0.0]  # a kept-list step after the errors: still exact
    edges = builder.edge_arrays(close)
    assert builder.rebuilds == 1
    fresh = build_graph(close, 4.0)
    assert _edge_vectors(edges.centers, edges.neighbors, edges.vectors) == _edge_vectors(
        fresh.centers, fresh.neighbors, fresh.vectors
    )
