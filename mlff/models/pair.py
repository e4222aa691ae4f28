"""Pair potential: a radial basis for each unordered element pair, fitted linearly."""

from __future__ import annotations

import torch

from mlff.graph import Graph
from mlff.models.radial import RadialBasis, default_r0
from mlff.models.repulsion import ZBLRepulsion
from mlff.protocol import BlockReadout, LinearSiteModel

__all__ = ["PairModel"]


class PairModel(LinearSiteModel):
    """``E = Σ_{pairs} V_{ab}(r)``, ``V_ab(r) = Σ_n θ_{ab,n} R_n(r)`` (+ optional ZBL prior).

    Each directed edge gives half its pair energy to its centre, so ``E_i = ½ Σ_j V(r_ij)``.
    ``R_n`` is a Chebyshev polynomial of an Agnesi-transformed distance times an envelope whose
    value and first two derivatives vanish at the cutoff.

    Parameters θ[p·n_max + n] for unordered pair p (pairs in the order (0,0), (0,1), …, (1,1), …).

    Args:
        elements: element symbols.
        cutoff: Å.
        n_max: radial functions per pair.
        repulsion: add a fixed ZBL core, switched off between ``0.5·r0`` and ``0.75·r0``
            where r0 is the sum of covalent radii of the pair. The prior carries no parameters.
        r0: (n_elements, n_elements) bond-length scale of the distance transform, Å.
    """

    def __init__(
        self,
        elements,
        cutoff: float = 5.0,
        n_max: int = 8,
        repulsion: bool = False,
        r0: torch.Tensor | None = None,
    ):
        super().__init__(elements, cutoff)
        n = self.n_elements
        r0 = default_r0(self.elements) if r0 is None else torch.as_tensor(r0, dtype=torch.float64)
        self.radial = RadialBasis(n_max, cutoff, r0)
        pair_index = torch.empty(n, n, dtype=torch.long)
        pairs = [(a, b) for a in range(n) for b in range(a, n)]
        for p, (a, b) in enumerate(pairs):
            pair_index[a, b] = pair_index[b, a] = p
        self.register_buffer("pair_index", pair_index, persistent=False)
        self.pairs = pairs
        self.readout = BlockReadout(len(pairs), n_max)
        self.repulsion = ZBLRepulsion(self.elements, 0.5 * r0, 0.75 * r0) if repulsion else None

    @property
    def n_max(self) -> int:
        return self.radial.n_max

    def _edges(self, graph: Graph):
        species = self.species(graph)
        si, sj = species[graph.centers], species[graph.neighbors]
        r = torch.linalg.vector_norm(graph.vectors, dim=1)  # (n_edges,)
        return r, si, sj

    def _to_sites(self, edge_values: torch.Tensor, graph: Graph) -> torch.Tensor:
        out = edge_values.new_zeros((graph.n_atoms,) + edge_values.shape[1:])
        return out.index_add_(0, graph.centers, 0.5 * edge_values)

    def site_energies(self, graph: Graph) -> torch.Tensor:
        r, si, sj = self._edges(graph)
        edge_energy = self.readout.energies(self.radial(r, si, sj), self.pair_index[si, sj])
        if self.repulsion is not None:
            edge_energy = edge_energy + self.repulsion(r, si, sj)
        return self._to_sites(edge_energy, graph)

    def site_basis(self, graph: Graph) -> torch.Tensor:
        r, si, sj = self._edges(graph)
        rows = self.readout.design(self.radial(r, si, sj), self.pair_index[si, sj])
        return self._to_sites(rows, graph)  # (n_atoms, P)

    def fixed_site_energies(self, graph: Graph) -> torch.Tensor:
        if self.repulsion is None:
            return super().fixed_site_energies(graph)
        r, si, sj = self._edges(graph)
        return self._to_sites(self.repulsion(r, si, sj), graph)

    def length_basis(self) -> int:
        return len(self.readout)

    def get_linear_parameters(self) -> torch.Tensor:
        return self.readout.get()

    def set_linear_parameters(self, theta) -> None:
        self.readout.set(theta, type(self).__name__)

    def extra_repr(self) -> str:
        return (
            f"elements={list(self.elements)}, cutoff={self.cutoff}, n_max={self.n_max}, "
            f"repulsion={self.repulsion is not None}, length_basis={self.length_basis()}"
        )
