"""The protocol's force, virial and stress helpers: the numpy forms against the torch forms."""

import numpy as np
import pytest
import torch
from helpers import STRUCTURES

from mlff import build_graph
from mlff.protocol import (
    forces_from_edge_arrays,
    forces_from_edge_grads,
    forces_virial_and_stress_from_edge_arrays,
    stress_from_virial,
    stress_from_virial_array,
    virial_from_edge_arrays,
    virial_from_edge_grads,
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numpy_and_torch_forms_agree(dtype):
    graph = build_graph(STRUCTURES["triclinic-sic"](), 4.0, dtype=dtype)
    grads = torch.randn(graph.n_edges, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    forces = forces_from_edge_grads(grads, graph)
    reference = torch.zeros(graph.n_atoms, 3, dtype=dtype).index_add_(0, graph.centers, grads)
    reference.index_add_(0, graph.neighbors, grads, alpha=-1.0)
    torch.testing.assert_close(forces, reference)
    np.testing.assert_array_equal(
        forces_from_edge_arrays(
            grads.numpy(), graph.centers.numpy(), graph.neighbors.numpy(), graph.n_atoms
        ),
        forces.numpy(),
    )
    virial = virial_from_edge_grads(grads, graph)
    assert virial.dtype == dtype
    torch.testing.assert_close(virial, -(grads.T @ graph.vectors))
    np.testing.assert_array_equal(
        virial_from_edge_arrays(grads.numpy(), graph.vectors.numpy()), virial.numpy()
    )
    both = forces_virial_and_stress_from_edge_arrays(
        grads.numpy(),
        graph.centers.numpy(),
        graph.neighbors.numpy(),
        graph.vectors.numpy(),
        graph.n_atoms,
        graph.volume(),
    )
    assert both[0].dtype == both[1].dtype == both[2].dtype == grads.numpy().dtype
    np.testing.assert_array_equal(both[0], forces.numpy())
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    np.testing.assert_allclose(
        both[1], virial.numpy(), rtol=0, atol=tol * float(virial.abs().max())
    )
    volume = graph.volume()
    stress = stress_from_virial(virial, volume)
    assert stress.dtype == dtype and stress.shape == (6,)
    sigma = -0.5 * (virial + virial.T) / volume
    torch.testing.assert_close(stress, sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    np.testing.assert_array_equal(stress_from_virial_array(virial.numpy(), volume), stress.numpy())
    np.testing.assert_allclose(
        both[2], stress.numpy(), rtol=0, atol=tol * float(stress.abs().max())
    )
    # The compiled scatter keeps a centre's sum in registers while its edges run; edges in any
    # order (centres interleaved) give the same forces and virial.
    shuffled = np.random.default_rng(1).permutation(graph.n_edges)
    mixed = forces_virial_and_stress_from_edge_arrays(
        grads.numpy()[shuffled],
        graph.centers.numpy()[shuffled],
        graph.neighbors.numpy()[shuffled],
        graph.vectors.numpy()[shuffled],
        graph.n_atoms,
        graph.volume(),
    )
    assert np.abs(np.diff(graph.centers.numpy()[shuffled])).astype(bool).mean() > 0.5
    np.testing.assert_allclose(
        mixed[0], forces.numpy(), rtol=0, atol=tol * float(forces.abs().max())
    )
    np.testing.assert_allclose(mixed[1], both[1], rtol=0, atol=tol * float(virial.abs().max()))


def test_torch_only_cases_keep_torch_semantics():
    """Batched virials, tensor volumes (autograd may flow through them) and mixed dtypes stay
    on the torch forms."""
    virials = torch.randn(4, 3, 3, dtype=torch.float64)
    assert stress_from_virial(virials, 10.0).shape == (4, 6)
    volume = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    assert stress_from_virial(virials[0], volume).requires_grad
    graph = build_graph(STRUCTURES["rattled-si"](), 4.0)
    with pytest.raises(RuntimeError, match="dtype"):
        virial_from_edge_grads(torch.zeros(graph.n_edges, 3, dtype=torch.float32), graph)
