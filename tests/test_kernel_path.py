"""The calculators' CPU path for models with compiled kernels (numpy from the neighbour list
to the results) against the torch path through graphs."""

import numpy as np
import pytest
import torch
from ase import Atoms
from helpers import STRUCTURES, make_ace, make_pair, make_stack

from mlff import SiteCalculator, StackedCalculator
from mlff.graph import EdgeArrays, VerletGraphBuilder
from mlff.protocol import SiteModel


def _results(calc, atoms, properties):
    calc.calculate(atoms, properties, ["positions", "numbers", "cell", "pbc"])
    return calc.results


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_kernel_path_matches_the_torch_path(name):
    """Every test structure (periodic, triclinic, slab, molecule); the stack's ACE part has a
    shorter cutoff than its pair part, so its edges are a restricted subset."""
    atoms = STRUCTURES[name]()
    properties = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
    fast = StackedCalculator(make_stack())
    assert fast.evaluator.uses_kernels
    reference = StackedCalculator(make_stack(), backend="torch")
    assert not reference.evaluator.uses_kernels
    got, want = _results(fast, atoms, properties), _results(reference, atoms, properties)
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(got["energies"], want["energies"], rtol=0, atol=1e-10)
    assert np.abs(want["forces"]).max() > 1e-3
    np.testing.assert_allclose(got["forces"], want["forces"], rtol=0, atol=1e-10)
    if atoms.pbc.all():
        np.testing.assert_allclose(got["stress"], want["stress"], rtol=0, atol=1e-12)
    else:
        assert "stress" not in got
    for key in ("energies", "forces"):
        assert got[key].dtype == np.float64


def test_kernel_path_in_float32():
    atoms = STRUCTURES["triclinic-sic"]()
    f32 = _results(
        StackedCalculator(make_stack(), dtype=torch.float32), atoms, ["energy", "forces", "stress"]
    )
    f64 = _results(StackedCalculator(make_stack()), atoms, ["energy", "forces", "stress"])
    assert f32["forces"].dtype == np.float64  # ASE gets float64 whatever the evaluation dtype
    assert abs(f32["energy"] - f64["energy"]) < 1e-4 * len(atoms)
    np.testing.assert_allclose(f32["forces"], f64["forces"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(f32["stress"], f64["stress"], rtol=0, atol=1e-6)


def test_a_hard_collision_runs_the_zbl_core_on_the_kernel_path():
    """Edges inside the ZBL core's reach: the core's part of the numba route sees them (and
    only them), and the results are the torch route's."""
    pair = make_pair(repulsion=True)
    core = pair.core_radius()
    atoms = Atoms("Si2", positions=[[0, 0, 0], [0.5 * core, 0, 0]], cell=[8, 8, 8], pbc=True)
    fast = _results(SiteCalculator(pair), atoms, ["energy", "forces", "stress"])
    reference = _results(
        SiteCalculator(pair, backend="torch"), atoms, ["energy", "forces", "stress"]
    )
    assert fast["energy"] > 1.0  # the core repels
    assert fast["energy"] == pytest.approx(reference["energy"], rel=1e-12)
    np.testing.assert_allclose(fast["forces"], reference["forces"], rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(fast["stress"], reference["stress"], rtol=1e-12, atol=1e-12)


def test_unknown_element_on_the_kernel_path_names_it():
    atoms = STRUCTURES["rattled-si"]()
    atoms.symbols[3] = "Cu"
    with pytest.raises(ValueError, match="Cu not known to .*known elements: H, C, Si"):
        _results(StackedCalculator(make_stack()), atoms, ["energy", "forces"])


class _NoKernel(SiteModel):
    """A model with only site energies: the generic autograd path."""

    def site_energies(self, graph):
        r = torch.linalg.vector_norm(graph.vectors, dim=1)
        return torch.zeros(graph.n_atoms, dtype=r.dtype).index_add_(0, graph.centers, torch.exp(-r))


def test_models_without_kernels_and_other_options_take_the_torch_path():
    assert not SiteCalculator(_NoKernel(["Si"], cutoff=3.0)).evaluator.uses_kernels
    mixed = StackedCalculator([make_ace(), _NoKernel(["H", "C", "Si"], cutoff=3.0)])
    assert not mixed.evaluator.uses_kernels
    assert not SiteCalculator(make_ace(), backend="torch").evaluator.uses_kernels
    assert SiteCalculator(make_ace(), backend="numba").evaluator.uses_kernels
    with pytest.raises(ValueError, match="backend 'numba' needs compiled kernels.*_NoKernel"):
        SiteCalculator(_NoKernel(["Si"], cutoff=3.0), backend="numba")
    atoms = STRUCTURES["rattled-si"]()
    atoms.calc = mixed
    assert np.isfinite(atoms.get_forces()).all()


def test_edge_arrays_are_the_graph_edges():
    atoms = STRUCTURES["triclinic-sic"]()
    builder = VerletGraphBuilder(4.5)
    edges, graph = builder.edge_arrays(atoms), builder(atoms)
    np.testing.assert_array_equal(edges.centers, graph.centers.numpy())
    np.testing.assert_array_equal(edges.neighbors, graph.neighbors.numpy())
    np.testing.assert_array_equal(edges.vectors, graph.vectors.numpy())
    sub, sub_graph = edges.restrict(3.0), graph.restrict(3.0)
    np.testing.assert_array_equal(sub.parent_edges, sub_graph.parent_edges.numpy())
    assert sub.cache is edges.cache and len(edges.restrict(0.0).centers) == 0
    assert edges.restrict(4.5) is edges
    with pytest.raises(ValueError, match="larger cutoff"):
        edges.restrict(5.0)
    assert isinstance(edges, EdgeArrays)


_THREADS_SCRIPT = """
import sys
import torch
sys.path.insert(0, "tests")
from helpers import STRUCTURES, make_stack
from mlff import StackedCalculator

torch.set_num_threads(int(sys.argv[1]))
atoms = STRUCTURES["rattled-si"]().repeat(2)
calc = StackedCalculator(make_stack())
for step in range(3):
    atoms.positions[0, 0] += 1e-3
    atoms.calc = calc
    atoms.get_forces()
    assert torch.get_num_threads() == int(sys.argv[1]), (step, torch.get_num_threads())
torch.set_num_threads(1)  # and back to one thread after the parallel kernels ran
atoms.positions[0, 0] += 1e-3
atoms.get_forces()
assert torch.get_num_threads() == 1, torch.get_num_threads()
"""


@pytest.mark.parametrize("threads, numba_threads", [(1, 2), (2, 2), (2, 1)])
def test_kernels_leave_torchs_thread_count_alone(threads, numba_threads):
    """numba's OpenMP pool sets the process's OpenMP thread count to its own size when it
    starts, which torch reads as its own: the kernels must start it without changing what the
    user set (visible where the sizes differ). A fresh process, since the pool starts once."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_NUM_THREADS=str(numba_threads))
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT, str(threads)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
