"""Closed-form energies and edge gradients agree with one autograd pass through site_energies."""

import numpy as np
import torch
from ase import Atoms

from mlff.graph import build_graph
from mlff.protocol import SiteModel


def _compare(model, atoms):
    graph = build_graph(atoms, model.cutoff)
    energies, grads = model.energies_and_grads(graph)
    ref_energies, ref_grads = SiteModel.energies_and_grads(model, graph)  # generic autograd
    assert torch.allclose(
        energies, ref_energies, rtol=0, atol=1e-12 * max(1.0, float(ref_energies.abs().max()))
    )
    scale = float(ref_grads.abs().max())
    assert scale > 0
    assert float((grads - ref_grads).abs().max()) < 1e-10 * scale


def test_closed_form_matches_autograd(model, structure):
    _compare(model, structure)


def test_pair_closed_form_inside_the_repulsive_core():
    from helpers import make_pair

    model = make_pair(repulsion=True)
    # Si–C at 0.9 Å: inside the ZBL switch (0.5–0.75 of the 1.87 Å covalent bond), plus a
    # normal neighbour so both kinds of edges are present.
    atoms = Atoms("SiCH", positions=[[0, 0, 0], [0.9, 0.1, 0.0], [0.3, 2.2, 0.4]])
    graph = build_graph(atoms, model.cutoff)
    r = torch.linalg.vector_norm(graph.vectors, dim=1)
    assert bool((r < model.repulsion.r_outer.max()).any())
    _compare(model, atoms)


def test_closed_form_with_no_edges(model):
    atoms = Atoms("Si", positions=[[0, 0, 0]], cell=np.eye(3) * 20, pbc=True)
    graph = build_graph(atoms, model.cutoff)
    energies, grads = model.energies_and_grads(graph)
    assert energies.shape == (1,) and grads.shape == (0, 3)
