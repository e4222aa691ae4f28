"""The protocol's force, virial and stress conventions: one function each, for numpy and torch
arrays alike, against the definitions written out here."""

import numpy as np
import pytest
import torch
from helpers import STRUCTURES

from mlff import build_graph
from mlff.graph import EdgeArrays
from mlff.protocol import (
    VOIGT_PAIRS,
    forces_and_stress,
    forces_from_edge_grads,
    stress_from_virial,
    virial_from_edge_grads,
    voigt,
)


def _edges(graph) -> EdgeArrays:
    arrays = (graph.numbers, graph.centers, graph.neighbors, graph.vectors)
    return EdgeArrays(*(a.numpy() for a in arrays), graph.cutoff)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numpy_and_torch_forms_agree(dtype):
    graph = build_graph(STRUCTURES["triclinic-sic"](), 4.0, dtype=dtype)
    edges = _edges(graph)
    grads = torch.randn(graph.n_edges, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    reference = torch.zeros(graph.n_atoms, 3, dtype=dtype).index_add_(0, graph.centers, grads)
    reference.index_add_(0, graph.neighbors, grads, alpha=-1.0)
    forces = forces_from_edge_grads(grads, graph)
    torch.testing.assert_close(forces, reference)
    np.testing.assert_array_equal(forces_from_edge_grads(grads.numpy(), edges), forces.numpy())
    virial = virial_from_edge_grads(grads, graph)
    assert virial.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(virial, -(grads.T @ graph.vectors))
    np.testing.assert_allclose(
        virial_from_edge_grads(grads.numpy(), edges),
        virial.numpy(),
        rtol=0,
        atol=tol * float(virial.abs().max()),
    )
    volume = graph.volume()
    stress = stress_from_virial(virial, volume)
    assert stress.dtype == dtype and stress.shape == (6,)
    sigma = -0.5 * (virial + virial.T) / volume
    torch.testing.assert_close(stress, sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    np.testing.assert_allclose(
        stress_from_virial(virial.numpy(), volume), stress.numpy(), rtol=1e-6, atol=0
    )
    both = forces_and_stress(grads.numpy(), edges, volume)
    assert both[0].dtype == grads.numpy().dtype
    np.testing.assert_array_equal(both[0], forces.numpy())
    np.testing.assert_allclose(
        both[1], stress.numpy(), rtol=0, atol=tol * float(stress.abs().max())
    )
    # The compiled scatter keeps a centre's sum in registers while its edges run; edges in any
    # order (centres interleaved) give the same forces and stress.
    shuffled = np.random.default_rng(1).permutation(graph.n_edges)
    mixed_edges = EdgeArrays(
        edges.numbers,
        edges.centers[shuffled],
        edges.neighbors[shuffled],
        edges.vectors[shuffled],
        edges.cutoff,
    )
    mixed = forces_and_stress(grads.numpy()[shuffled], mixed_edges, volume)
    assert np.abs(np.diff(mixed_edges.centers)).astype(bool).mean() > 0.5
    np.testing.assert_allclose(
        mixed[0], forces.numpy(), rtol=0, atol=tol * float(forces.abs().max())
    )
    np.testing.assert_allclose(mixed[1], both[1], rtol=0, atol=tol * float(stress.abs().max()))


def test_trailing_dimensions_and_batches():
    """Design rows: (n_edges, P, 3) gradients give (n_atoms, P, 3) forces and (P, 3, 3)
    virials, column by column as for one gradient; stresses of a batch of virials."""
    graph = build_graph(STRUCTURES["rattled-si"](), 4.0)
    rows = torch.randn(graph.n_edges, 5, 3, dtype=torch.float64)
    forces = forces_from_edge_grads(rows, graph)
    virials = virial_from_edge_grads(rows, graph)
    assert forces.shape == (graph.n_atoms, 5, 3) and virials.shape == (5, 3, 3)
    for k in range(5):
        torch.testing.assert_close(forces[:, k], forces_from_edge_grads(rows[:, k].clone(), graph))
        torch.testing.assert_close(virials[k], virial_from_edge_grads(rows[:, k], graph))
    np.testing.assert_allclose(
        virial_from_edge_grads(rows.numpy(), _edges(graph)), virials.numpy(), atol=1e-12
    )
    assert stress_from_virial(virials, 10.0).shape == (5, 6)
    volume = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    assert stress_from_virial(virials[0], volume).requires_grad


def test_voigt_order_is_ases():
    from ase.stress import full_3x3_to_voigt_6_stress

    batch = np.random.default_rng(0).standard_normal((4, 3, 3))
    np.testing.assert_array_equal(voigt(batch), full_3x3_to_voigt_6_stress(batch))
    assert voigt(batch.reshape(2, 2, 3, 3)).shape == (2, 2, 6)
    np.testing.assert_array_equal(voigt(batch.reshape(2, 2, 3, 3))[1, 0], voigt(batch[2]))
    tensor = np.arange(9.0).reshape(3, 3)
    symmetric = 0.5 * (tensor + tensor.T)
    expected = [symmetric[a, b] for a, b in VOIGT_PAIRS]
    np.testing.assert_array_equal(voigt(tensor), expected)
    np.testing.assert_array_equal(voigt(torch.from_numpy(tensor)).numpy(), expected)
    np.testing.assert_array_equal(expected, [0.0, 4.0, 8.0, 6.0, 4.0, 2.0])  # xx yy zz yz xz xy
