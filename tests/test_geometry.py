"""Hostile geometry: every bad cell, position or atomic number ends in a ValueError that names
it (never a signal from compiled code, never a silent wrong answer), and geometries that are
odd but valid (far-flung atoms, any vector along an open direction) give the right edges."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.neighborlist import neighbor_list
from helpers import make_stack

from mlff import StackedCalculator, build_graph
from mlff.geometry import MAX_COORDINATE, check_cell, periodic_widths, search_cell
from mlff.graph import VerletGraphBuilder


def _edge_set(graph):
    shifts = np.rint(graph.shifts.numpy()).astype(int)
    return sorted(
        (int(i), int(j), *map(int, s))
        for (i, j), s in zip(graph.edge_index.T.tolist(), shifts, strict=True)
    )


def _si_cell(entry=None, value=None, pbc=(True, True, True)) -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    cell = atoms.cell.array.copy()
    if entry is not None:
        cell[entry] = value
    atoms.set_cell(cell, scale_atoms=False)
    atoms.pbc = pbc
    return atoms


def _collinear_slab() -> Atoms:
    atoms = _si_cell(pbc=(True, True, False))
    cell = atoms.cell.array.copy()
    cell[1] = 2.0 * cell[0]
    atoms.set_cell(cell, scale_atoms=False)
    return atoms


#: name → (atoms factory, message): each of these killed the process with SIGFPE, or gave a
#: silently wrong energy, before the checks.
BAD_GEOMETRIES = {
    "nan-cell": (lambda: _si_cell((0, 0), np.nan), r"cell entry \[0\]\[0\] is nan"),
    "inf-cell": (lambda: _si_cell((1, 1), np.inf), r"cell entry \[1\]\[1\] is inf"),
    "huge-cell": (lambda: _si_cell((2, 2), 1e300), r"cell entry \[2\]\[2\] is 1e\+300 Å"),
    "collinear-periodic-vectors": (
        _collinear_slab,
        r"periodic cell vectors \[0, 1\] are linearly dependent",
    ),
    "nan-open-vector": (
        lambda: _si_cell((2, 2), np.nan, (True, True, False)),
        r"cell entry \[2\]\[2\] is nan",
    ),
    "inf-open-vector": (
        lambda: _si_cell((2, 1), -np.inf, (True, True, False)),
        r"cell entry \[2\]\[1\] is -inf",
    ),
    "elongated-periodic-cell": (lambda: _si_cell((2, 2), 1e7), "cannot bin 8 atoms"),
    "atom-far-along-periodic": (
        lambda: Atoms("Si2", positions=[[0, 0, 0], [1e12 * 5.43, 0, 0]], cell=[5.43] * 3, pbc=True),
        r"atoms \[1\] lie 5.43e\+12 Å from the origin",
    ),
    "negative-Z": (
        lambda: Atoms(numbers=[14, -3], positions=[[0, 0, 0], [2, 0, 0]]),
        r"atomic numbers \[-3\]",
    ),
    "Z-above-118": (
        lambda: Atoms(numbers=[14, 119], positions=[[0, 0, 0], [2, 0, 0]]),
        r"atomic numbers \[119\]",
    ),
    "Z-zero": (
        lambda: Atoms(numbers=[0, 14], positions=[[0, 0, 0], [2, 0, 0]]),
        r"atoms \[0\].*numbers \[0\]",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_GEOMETRIES))
def test_bad_geometry_is_refused_by_every_entry_point(name):
    factory, message = BAD_GEOMETRIES[name]
    with pytest.raises(ValueError, match=message):
        build_graph(factory(), 5.0)
    builder = VerletGraphBuilder(5.0, skin=0.5)
    builder(_si_cell() if "Z" not in name else Atoms("Si2", positions=[[0, 0, 0], [2, 0, 0]]))
    with pytest.raises(ValueError, match=message):  # a kept list must not hide the bad input
        builder.edge_arrays(factory())
    atoms = factory()
    atoms.calc = StackedCalculator(make_stack())
    with pytest.raises(ValueError, match=message):
        atoms.get_potential_energy()


def test_bad_geometries_raise_in_python_and_never_kill_the_process():
    """Each bad case, run through the calculator in a fresh process: it must end with a Python
    exception, not SIGFPE or SIGSEGV (which pytest could not catch in-process)."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_geometry import BAD_GEOMETRIES
        from helpers import make_stack
        from mlff import StackedCalculator
        for name, (factory, _) in sorted(BAD_GEOMETRIES.items()):
            print("case", name, flush=True)
            atoms = factory()
            atoms.calc = StackedCalculator(make_stack())
            try:
                atoms.get_forces()
            except ValueError:
                print("refused", name, flush=True)
    """)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", script, tests_dir], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}; last output:\n{result.stdout[-500:]}{result.stderr[-2000:]}"
    )
    for name in BAD_GEOMETRIES:
        assert f"refused {name}" in result.stdout


@pytest.mark.parametrize(
    "open_vector", [[0.0, 0.0, 0.0], [5.43, 0.0, 0.0], [3.0, 1.0, 1e-3], [0.0, 0.0, 9e7]]
)
def test_vector_along_an_open_direction_does_not_change_the_edges(open_vector):
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    slab.pbc = (True, True, False)
    slab.rattle(0.05, seed=3)
    reference = _edge_set(build_graph(slab, 5.0))
    odd = slab.copy()
    cell = odd.cell.array.copy()
    cell[2] = open_vector
    odd.set_cell(cell, scale_atoms=False)
    assert _edge_set(build_graph(odd, 5.0)) == reference
    builder = VerletGraphBuilder(5.0, skin=0.5)
    builder(slab)
    graph = builder(odd)  # only the open vector changed: no rebuild, the same edges
    assert builder.rebuilds == 1 and _edge_set(graph) == reference


@pytest.mark.parametrize("distance", [1e6, 3e7, 0.99 * MAX_COORDINATE])
def test_atoms_far_along_open_directions_keep_their_neighbours(distance):
    """vesin's cell list divides by zero for such spans; the search splits the atoms at gaps
    wider than the cutoff, which no edge can cross, and must find every edge ASE finds."""
    cluster = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    cluster.pbc, cluster.cell = False, np.zeros((3, 3))
    far = cluster + Atoms("Si2", positions=[[distance, 1.0, 0.0], [distance + 2.3, 1.0, 0.0]])
    graph = build_graph(far, 5.0)
    expected = _edge_set(build_graph(cluster, 5.0)) + [(64, 65, 0, 0, 0), (65, 64, 0, 0, 0)]
    assert _edge_set(graph) == sorted(expected)
    np.testing.assert_allclose(np.linalg.norm(graph.vectors.numpy(), axis=1).max(), 4.99, atol=0.6)

    slab = fcc111("Cu", (3, 3, 3), vacuum=8.0)
    slab.pbc = (True, True, False)
    cell = slab.cell.array.copy()
    cell[0] += [
        0.0,
        0.0,
        0.3,
    ]  # periodic vectors with a component along z: gaps must be measured normal to them
    slab.set_cell(cell, scale_atoms=False)
    flown = slab + Atoms("Cu", positions=[[1.0, 1.0, distance]])
    i, j, shifts = neighbor_list("ijS", slab, 5.0)
    reference = sorted(zip(i.tolist(), j.tolist(), *np.asarray(shifts).T.tolist(), strict=True))
    assert _edge_set(build_graph(flown, 5.0)) == reference


def test_energy_of_a_far_atom_is_the_sum_of_its_parts():
    calc = StackedCalculator(make_stack())
    near = bulk("Si", "diamond", a=5.43, cubic=True)
    near.pbc, near.cell = False, np.zeros((3, 3))
    near.rattle(0.05, seed=1)
    lone = Atoms("CH", positions=[[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]])
    together = near + Atoms("CH", positions=[[4e7, 0.0, 0.0], [4e7 + 1.1, 0.0, 0.0]])
    energies = []
    for atoms in (near, lone, together):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert abs(energies[2] - energies[0] - energies[1]) < 1e-9
    forces = together.get_forces()
    assert np.isfinite(forces).all() and abs(forces[-1, 0] + forces[-2, 0]) < 1e-9


@pytest.mark.parametrize("thickness, far", [(1e-2, 3e7), (0.09, 1e8 - 0.3), (5.43, 9e7)])
def test_atoms_many_widths_away_along_a_periodic_direction_keep_their_neighbours(thickness, far):
    """vesin keeps shifts in int32: positions over 2³¹ widths from the cell lost edges before
    the search wrapped them into the cell."""
    from test_geometry_fuzz import _brute_force_edges

    atoms = Atoms(
        "Si2",
        positions=[[0.0, 0.0, 0.5], [1.0, 1.0, far]],
        cell=np.diag([6.0, 6.0, thickness]),
        pbc=True,
    )
    graph = build_graph(atoms, 3.0)
    assert graph.n_edges > 0 and set(map(tuple, _edge_set(graph))) == {
        (i, j, *s) for i, j, s in _brute_force_edges(atoms, 3.0)
    }


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pbc", [(True, True, False), (True, False, False)])
def test_far_atoms_beside_slabs_and_wires_are_searched_in_groups(pbc):
    """With mixed boundaries vesin's cell list visits every open-direction cell from every
    cell: an atom 10⁵ Å above a slab took a minute, 10³ Å beside a wire 35 s, before the
    groups. The timeout guards against that coming back."""
    cell = np.diag([3.0, 3.0, 3.0]) * np.asarray(pbc)[:, None]
    atoms = Atoms("Si3", positions=[[0, 0, 0], [0, 1.5, 1.2], [0, 4e5, 4e5]], cell=cell, pbc=pbc)
    i, j = build_graph(atoms, 5.0).edge_index.numpy()
    assert ((i == 2) == (j == 2)).all()  # the far atom sees only its own periodic images
    assert ((i == 0) & (j == 1)).any()


def test_input_packed_beyond_physics_is_refused_before_the_search():
    """Si scaled by 0.05: 8 atoms with over 10⁵ neighbours each; at 0.03 a 64-atom cell would
    need tens of GB of edges."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.set_cell(atoms.cell.array * 0.05, scale_atoms=True)
    with pytest.raises(ValueError, match="packed so densely .* at most 1e\\+04 are accepted"):
        build_graph(atoms, 5.0)
    atoms.set_cell(
        atoms.cell.array * 10.0, scale_atoms=True
    )  # half the lattice constant: absurd but computable
    assert build_graph(atoms, 5.0).n_edges == 8 * 190


def test_cutoffs_below_what_vesin_accepts_find_no_edges_or_the_overlap():
    assert build_graph(Atoms("Si2", positions=[[0, 0, 0], [1, 0, 0]]), 1e-7).n_edges == 0
    with pytest.raises(ValueError, match="must not overlap"):
        build_graph(Atoms("Si2", positions=[[0, 0, 0], [1e-7, 0, 0]]), 1e-6)


def test_cell_thinner_than_the_search_allows_is_refused():
    atoms = Atoms("Si", cell=[[5.0, 0, 0], [0, 5.0, 0], [0, 0, 1e-3]], pbc=True)
    atoms.set_cell([[5.0, 0, 0], [0, 1e-2, 0], [0, 0, 1e-3]])
    with pytest.raises(ValueError, match="images within the cutoff"):
        build_graph(atoms, 5.0)


def test_periodic_widths_and_search_cell():
    cell = np.array([[4.0, 0, 0], [1.0, 3.0, 0], [0.5, 0.5, 2.0]])
    np.testing.assert_allclose(
        periodic_widths(cell, [True] * 3),
        [
            24 / np.linalg.norm(np.cross(cell[1], cell[2])),
            24 / np.linalg.norm(np.cross(cell[2], cell[0])),
            2.0,
        ],
    )
    np.testing.assert_allclose(
        periodic_widths(cell, [True, True, False]), [12 / np.sqrt(10), 3.0, np.inf]
    )
    np.testing.assert_allclose(
        periodic_widths(cell, [False, True, False]), [np.inf, np.sqrt(10), np.inf]
    )
    for pbc in ([True, True, False], [False, True, False], [False] * 3):
        search = search_cell(cell, pbc)
        np.testing.assert_array_equal(search[pbc], cell[pbc])
        gram = search @ search.T
        closed = np.asarray(pbc)
        np.testing.assert_allclose(gram[~closed][:, ~closed], np.eye((~closed).sum()), atol=1e-12)
        np.testing.assert_allclose(gram[~closed][:, closed], 0.0, atol=1e-12)
    check_cell(np.zeros((3, 3)), [False] * 3)
    with pytest.raises(ValueError, match="linearly dependent"):
        check_cell([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]], [True] * 3)
