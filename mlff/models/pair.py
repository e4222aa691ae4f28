"""Pair potential: a radial basis for each unordered element pair, fitted linearly."""

from __future__ import annotations

import numpy as np
import torch

from mlff.graph import EdgeArrays, Graph
from mlff.kernels.pair import PairTables, pair_energies_and_grads
from mlff.models.radial import RadialBasis, check_r0
from mlff.models.repulsion import ZBLRepulsion
from mlff.protocol import BlockReadout, CompiledPart, ReadoutModel

__all__ = ["PairModel"]


class PairModel(ReadoutModel):
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
        inner: (start, end) fractions of r0 of an inner switch on the fitted radial basis
            (:class:`~mlff.models.radial.InnerSwitch`): the fitted pair energy vanishes below
            ``start·r0``, where no data reach, and the ZBL core alone decides; ``None`` keeps
            it everywhere.
    """

    def __init__(
        self,
        elements,
        cutoff: float = 5.0,
        n_max: int = 8,
        repulsion: bool = False,
        r0: torch.Tensor | None = None,
        inner: tuple[float, float] | None = None,
    ):
        super().__init__(elements, cutoff)
        n = self.n_elements
        r0 = check_r0(r0, self.elements)
        self.radial = RadialBasis(n_max, cutoff, r0, inner=inner)
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

    def check_parameters(self, prefix: str = "") -> None:
        """Finite tensors, a valid r0 and, with the ZBL core, its constructor's invariants."""
        super().check_parameters(prefix)
        self.radial.check_parameters(self.elements, f"{prefix}radial.")
        if self.repulsion is not None:
            self.repulsion.check_parameters(self.elements, f"{prefix}repulsion.")

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
            edge_energy = edge_energy + self._repulsion(r, si, sj)
        return self._to_sites(edge_energy, graph)

    def kernel_tables(self, dtype) -> PairTables:
        """What the compiled kernel reads (:class:`~mlff.kernels.pair.PairTables`): the pair
        index, θ (n_pairs, n_max) and the radial constants, in numpy ``dtype``."""
        weight = self.readout.weight.detach().cpu().numpy().astype(dtype)
        return PairTables(self.radial.kernel_tables(dtype), self.pair_index.cpu().numpy(), weight)

    def core_radius(self) -> float:
        """Where the ZBL core starts to count (Å; 0 without one): edges shorter than this need
        the torch route."""
        return 0.0 if self.repulsion is None else float(self.repulsion.r_outer.max())

    def compiled(self, dtype) -> tuple[CompiledPart, ...]:
        """The compiled radial kernel, and the ZBL core's part where the model has one."""
        tables = self.kernel_tables(dtype)

        def run(edges: EdgeArrays, species: np.ndarray, n_threads: int):
            energies, grads, _ = pair_energies_and_grads(
                tables, edges.vectors, edges.centers, edges.neighbors, species, n_threads
            )
            return energies, grads

        radial = CompiledPart(run, self.cutoff, self.elements, type(self).__name__, "pair", tables)
        core = self.core_part()
        return (radial,) if core is None else (radial, core)

    def core_part(self) -> CompiledPart | None:
        """The ZBL core as a part of the numba route (``None`` without one): its cutoff is the
        core's reach, so it sees only the edges inside it, none on an ordinary MD step; the
        few it sees in a hard collision go through torch. A stack that folds the radial part
        into an ACE kernel keeps this part."""
        if self.repulsion is None:
            return None

        def run(edges: EdgeArrays, species: np.ndarray, n_threads: int):
            n_atoms = len(species)
            if not len(edges.centers):  # the usual case in MD: nothing to add
                return None
            centers, neighbors = torch.from_numpy(edges.centers), torch.from_numpy(edges.neighbors)
            kinds = torch.from_numpy(species)
            site, grads = self._core(
                torch.from_numpy(edges.vectors), centers, kinds[centers], kinds[neighbors], n_atoms
            )
            return site.numpy(), grads.numpy()

        tables = self.repulsion.kernel_tables()
        return CompiledPart(run, self.core_radius(), self.elements, "ZBL core", "zbl", tables)

    @torch.no_grad()
    def energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """E_i (n_atoms,) and ∂E/∂r_e = ½ V'(r_e) r̂_e (n_edges, 3), in closed form. The ZBL
        core is added only on the rare edges inside its switch radius."""
        r, si, sj = self._edges(graph)
        radial, d_radial = self.radial.with_derivative(r, si, sj)
        pairs = self.pair_index[si, sj]
        slope = self.readout.energies(d_radial, pairs)  # V'(r), eV/Å
        site = self._to_sites(self.readout.energies(radial, pairs), graph)
        grads = (0.5 * slope / r)[:, None] * graph.vectors
        if self.repulsion is None:
            return site, grads
        close = torch.nonzero(r < self.core_radius()).squeeze(1)
        if close.numel() == 0:  # the usual case in MD: the core is only reached in hard collisions
            return site, grads
        centers, vectors = graph.centers[close], graph.vectors[close]
        core_site, core_grads = self._core(vectors, centers, si[close], sj[close], graph.n_atoms)
        return site + core_site, grads.index_add(0, close, core_grads)

    @torch.no_grad()
    def _core(self, vectors, centers, si, sj, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ZBL core's E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) on the given edges, half of
        each pair energy to the edge's centre; zero beyond the switch radius."""
        r = torch.linalg.vector_norm(vectors, dim=1)
        with torch.enable_grad():
            rc = r.detach().requires_grad_(True)
            core = self.repulsion(rc, si, sj)
            (d_core,) = torch.autograd.grad(core.sum(), rc)
        site = vectors.new_zeros(n_atoms).index_add(0, centers, 0.5 * core.detach())
        return site, (0.5 * d_core / r)[:, None] * vectors

    def _repulsion(self, r: torch.Tensor, si: torch.Tensor, sj: torch.Tensor) -> torch.Tensor:
        """ZBL energies (n_edges,), evaluated only on edges inside its switch radius."""
        close = torch.nonzero(r < self.repulsion.r_outer.max()).squeeze(1)
        out = torch.zeros_like(r)
        if close.numel() == 0:  # the usual case in MD: no bond that short
            return out
        return out.index_put((close,), self.repulsion(r[close], si[close], sj[close]))

    def site_basis(self, graph: Graph) -> torch.Tensor:
        r, si, sj = self._edges(graph)
        rows = self.readout.design(self.radial(r, si, sj), self.pair_index[si, sj])
        return self._to_sites(rows, graph)  # (n_atoms, P)

    @torch.no_grad()
    def site_basis_jacobian(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """Basis (n_atoms, P) and ∂B_{i(e)}/∂r_e = ½ R_n'(r_e) r̂_e in its pair's columns."""
        species = self.species(graph)
        si, sj = species[graph.centers], species[graph.neighbors]
        r = torch.linalg.vector_norm(graph.vectors, dim=1)
        radial, d_radial = self.radial.with_derivative(r, si, sj)
        pairs = self.pair_index[si, sj]
        basis = self._to_sites(self.readout.design(radial, pairs), graph)
        unit = graph.vectors / r[:, None]
        rows = self.readout.design(0.5 * d_radial, pairs)  # (n_edges, P)
        return basis, rows[:, :, None] * unit[:, None, :]

    def fixed_site_energies(self, graph: Graph) -> torch.Tensor:
        if self.repulsion is None:
            return super().fixed_site_energies(graph)
        r, si, sj = self._edges(graph)
        return self._to_sites(self._repulsion(r, si, sj), graph)

    def fit_dimer_curve(self, pair: tuple[str, str], r, energies) -> float:
        """Set pair ``pair``'s block of θ so V(r) matches ``energies`` (eV) at distances ``r`` (Å)
        by least squares, on top of the repulsive prior; other blocks are left as they are.

        Returns the RMS misfit, eV. Useful to start from a known pair potential.
        """
        a, b = pair
        for e in pair:
            if e not in self.elements:
                raise ValueError(
                    f"element {e!r} not known to PairModel; "
                    f"known elements: {', '.join(self.elements)}"
                )
        r = torch.as_tensor(r, dtype=torch.float64).reshape(-1)
        energies = torch.as_tensor(energies, dtype=torch.float64).reshape(-1)
        if (
            r.shape != energies.shape
            or r.numel() == 0
            or bool((r <= 0).any() | (r >= self.cutoff).any())
        ):
            raise ValueError(
                f"need matching r and energies with 0 < r < cutoff={self.cutoff} Å; got "
                f"{r.numel()} distances in [{float(r.min()) if r.numel() else 'n/a'}, "
                f"{float(r.max()) if r.numel() else 'n/a'}]"
                f" and {energies.numel()} energies"
            )
        sa, sb = self.elements.index(a), self.elements.index(b)
        si = torch.full_like(r, sa, dtype=torch.long)
        sj = torch.full_like(r, sb, dtype=torch.long)
        design = self.radial(r, si, sj)  # (n_r, n_max)
        target = energies - (self.repulsion(r, si, sj) if self.repulsion is not None else 0.0)
        solution = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
        p = int(self.pair_index[sa, sb])
        with torch.no_grad():
            self.readout.weight[p] = solution
        self.parameters_changed()
        return float((design @ solution - target).pow(2).mean().sqrt())

    def basis_degrees(self) -> torch.Tensor:
        """n (1 … n_max) of each radial function, repeated for every pair block."""
        return torch.arange(1, self.n_max + 1, dtype=torch.float64).repeat(len(self.pairs))

    def extra_repr(self) -> str:
        return (
            f"elements={list(self.elements)}, cutoff={self.cutoff}, n_max={self.n_max}, "
            f"repulsion={self.repulsion is not None}, length_basis={self.length_basis()}"
        )
