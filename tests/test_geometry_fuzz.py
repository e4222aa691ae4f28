"""Fuzzing the geometry boundary with hypothesis: random positions (NaN, inf, huge, far-flung),
cells (zero, degenerate, tilted, non-finite), pbc and atomic numbers. Every input ends in a
ValueError or in a neighbour list that agrees with the edge convention and with ASE; the
calculator then gives finite energies and forces. A process-killing signal would end the run.

The default profile takes a few seconds; ``-m slow`` runs a longer one.
"""

import numpy as np
import pytest
from ase import Atoms
from helpers import ELEMENTS, make_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlff import StackedCalculator, build_graph
from mlff.graph import VerletGraphBuilder

CUTOFF = 3.0

_EXTREME = st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e9, 3e7, -2e6, 1e-300])
_SANE = st.floats(-12.0, 12.0)


def _corrupt(draw, values: np.ndarray, extremes) -> np.ndarray:
    """``values`` with zero to two entries replaced by hostile ones (none most of the time)."""
    values = values.copy()
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        values.flat[draw(st.integers(0, values.size - 1))] = draw(extremes)
    return values


@st.composite
def _cells(draw) -> np.ndarray:
    kind = draw(
        st.sampled_from(["box", "tilted", "zero", "collinear", "coplanar", "random", "thin"])
    )
    rows = np.array(draw(st.lists(_SANE, min_size=9, max_size=9))).reshape(3, 3)
    if kind == "box":
        rows = np.diag(draw(st.lists(st.floats(1.0, 12.0), min_size=3, max_size=3)))
    elif kind == "zero":
        rows = np.zeros((3, 3))
    elif kind == "tilted":
        rows = np.diag([6.0, 7.0, 8.0]) + 0.25 * rows
    elif kind == "collinear":
        rows[1] = draw(st.floats(-3.0, 3.0)) * rows[0]
    elif kind == "coplanar":
        rows[2] = rows[0] + rows[1]
    elif kind == "thin":
        rows = np.diag([6.0, 6.0, draw(st.sampled_from([1e-12, 1e-6, 1e-3, 0.3]))])
    return _corrupt(draw, rows, _EXTREME)


@st.composite
def _atoms(draw, valid_numbers: bool = False) -> Atoms:
    n = draw(st.integers(1, 6))
    numbers = np.array(draw(st.lists(st.sampled_from([1, 6, 14]), min_size=n, max_size=n)))
    if not valid_numbers:
        numbers = _corrupt(draw, numbers, st.sampled_from([-3, -1, 0, 119, 125]))
    positions = np.array(
        draw(st.lists(st.floats(-4.0, 4.0), min_size=3 * n, max_size=3 * n))
    ).reshape(n, 3)
    pbc = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    atoms = Atoms(numbers=np.ones(n, dtype=int), positions=np.zeros((n, 3)), pbc=pbc)
    atoms.numbers[:] = numbers  # past ASE's own checks: the boundary under test is mlff's
    atoms.positions[:] = _corrupt(draw, positions, _EXTREME)
    atoms.cell.array[:] = draw(_cells())
    return atoms


def _brute_force_edges(atoms: Atoms, cutoff: float) -> set:
    """Every (i, j, S) with |x_j − x_i + S·cell| < cutoff, by enumerating image shifts: the
    oracle for small inputs (ASE's neighbour list mishandles a singular cell along open
    directions)."""
    pbc, cell = atoms.pbc, atoms.cell.array
    basis = cell.copy()
    basis[~pbc] = np.linalg.svd(cell[pbc])[2][pbc.sum() :] if pbc.any() else np.eye(3)[~pbc]
    fractional = atoms.positions @ np.linalg.inv(basis)
    widths = 1.0 / np.linalg.norm(np.linalg.inv(basis), axis=0)  # distances between lattice planes
    edges = set()
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            ranges = []
            for d in range(3):
                if not pbc[d]:
                    ranges.append([0])
                    continue
                centre, reach = fractional[i, d] - fractional[j, d], cutoff / widths[d] + 1
                ranges.append(
                    range(int(np.floor(centre - reach)), int(np.ceil(centre + reach)) + 1)
                )
            for shift in np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1).T:
                r = atoms.positions[j] - atoms.positions[i] + shift @ cell
                if (i != j or shift.any()) and r @ r < cutoff * cutoff:
                    edges.add((i, j, tuple(shift.tolist())))
    return edges


def _check_graph(atoms: Atoms, graph) -> None:
    """The edge convention holds, the list is symmetric, and small lists equal the oracle's."""
    vectors = graph.vectors.numpy()
    assert np.isfinite(vectors).all()
    assert (np.linalg.norm(vectors, axis=1) < CUTOFF).all()
    i, j = graph.edge_index.numpy()
    shifts = np.rint(graph.shifts.numpy()).astype(int)
    assert not (shifts[:, ~atoms.pbc] != 0).any()  # no images along open directions
    expected = atoms.positions[j] - atoms.positions[i] + shifts @ atoms.cell.array
    scale = 1.0 + np.abs(atoms.positions).max() + np.abs(shifts @ atoms.cell.array).max(initial=0.0)
    np.testing.assert_allclose(vectors, expected, atol=1e-12 * scale)
    edges = set(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist()), strict=True))
    assert all((b, a, tuple(-np.array(s))) in edges for a, b, s in edges)
    if graph.n_edges < 3000:
        assert edges == _brute_force_edges(atoms, CUTOFF)


def _graph_or_refusal(atoms: Atoms, cutoff: float = CUTOFF):
    try:
        return build_graph(atoms, cutoff)
    except ValueError:
        return None


FAST = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
LONG = settings(FAST, max_examples=5000)


def _graphs_are_right_or_refused(atoms: Atoms) -> None:
    graph = _graph_or_refusal(atoms)
    if graph is not None:
        _check_graph(atoms, graph)
        builder = VerletGraphBuilder(CUTOFF, skin=0.3)
        arrays = builder.edge_arrays(atoms)
        assert arrays.centers.shape == (graph.n_edges,)


@FAST
@given(_atoms())
def test_graph_is_right_or_refused(atoms):
    _graphs_are_right_or_refused(atoms)


@pytest.mark.slow
@LONG
@given(_atoms())
def test_graph_is_right_or_refused_long(atoms):
    _graphs_are_right_or_refused(atoms)


_CALCULATOR = StackedCalculator(make_stack())


def _calculator_is_finite_or_refuses(atoms: Atoms) -> None:
    atoms.calc = _CALCULATOR
    try:
        energy = atoms.get_potential_energy()
    except ValueError:
        # The calculator searches at its model's cutoff plus the Verlet skin (0.5 Å).
        reach = _CALCULATOR.model.cutoff + 0.5
        assert _graph_or_refusal(atoms, reach) is None or set(atoms.get_chemical_symbols()) - set(
            ELEMENTS
        )
        return
    # Random geometries put atoms inside one another: energies are large, never NaN.
    assert np.isfinite(energy) and np.isfinite(atoms.get_forces()).all()


@FAST
@given(_atoms(valid_numbers=True))
def test_calculator_is_finite_or_refuses(atoms):
    _calculator_is_finite_or_refuses(atoms)


@pytest.mark.slow
@LONG
@given(_atoms(valid_numbers=True))
def test_calculator_is_finite_or_refuses_long(atoms):
    _calculator_is_finite_or_refuses(atoms)
