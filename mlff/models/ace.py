"""Many-body atomic cluster expansion (ACE), linear in its per-element readout."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mlff.graph import EdgeArrays, Graph, center_offsets
from mlff.kernels.ace import ace_energies_and_grads
from mlff.models.ace_basis import ACEBasisFunction, enumerate_ace_basis
from mlff.models.ace_jacobian import InvariantGradients
from mlff.models.ace_product import InvariantProducts
from mlff.models.ace_tables import ace_kernel_tables
from mlff.models.harmonics import (
    harmonic_gradient_dot,
    spherical_harmonics,
    spherical_harmonics_with_gradients,
)
from mlff.models.radial import RadialBasis, check_r0
from mlff.protocol import BlockReadout, CompiledPart, ReadoutModel

__all__ = ["ACEModel", "DEFAULT_MAX_DEGREE"]

DEFAULT_MAX_DEGREE: dict[int, float] = {1: 10, 2: 15, 3: 14}


class ACEModel(ReadoutModel):
    """Linear ACE: ``E_i = Σ_k θ_{s_i, k} B_{i k}`` with invariants B of correlation order ≤ 4.

    The atomic basis is ``A_{i, (z, n), lm} = Σ_{j: z_j = z} R_n(r_ij) Y_lm(r̂_ij)`` with
    e3nn's real spherical harmonics; the invariants are products of A contracted with
    Clebsch–Gordan (Wigner 3j) coefficients, chosen by the total-degree rule (see
    :mod:`mlff.models.ace_basis`). ``basis_spec[k]`` describes column k of every element block.

    Args:
        elements: element symbols; each is both a centre (own readout block) and a neighbour
            channel.
        cutoff: Å.
        n_max, l_max: radial and angular resolution of the one-particle basis.
        max_degree: correlation order ν → largest Σ (n + w_l·l). The default
            ``{1: 10, 2: 15, 3: 14}`` with ``l_max=3`` gives 384 functions for one element.
        w_l: weight of l in the degree.
        r0: (n_elements, n_elements) bond-length scale of the distance transform, Å.
        inner: (start, end) fractions of r0: the radial basis switches off smoothly below
            ``end·r0`` and is zero below ``start·r0`` (:class:`~mlff.models.radial.InnerSwitch`),
            so the many-body term has no say where atoms sit far closer than any bond in the
            data; ``None`` (default) keeps it everywhere.
    """

    def __init__(
        self,
        elements,
        cutoff: float = 5.0,
        n_max: int = 10,
        l_max: int = 3,
        max_degree: Mapping[int, float] | None = None,
        w_l: float = 1.5,
        r0: torch.Tensor | None = None,
        inner: tuple[float, float] | None = None,
    ):
        super().__init__(elements, cutoff)
        raw = dict(DEFAULT_MAX_DEGREE if max_degree is None else max_degree)
        bad = [nu for nu in raw if str(nu).strip() not in ("1", "2", "3", "4")]
        max_degree = {
            int(nu): float(d) for nu, d in raw.items() if nu not in bad
        }  # TOML keys are strings
        if bad or not max_degree:
            raise ValueError(
                f"max_degree keys are correlation orders; got {sorted(map(str, raw))}, accepted 1-4"
            )
        if l_max < 0 or n_max < 1:
            raise ValueError(f"need n_max >= 1 and l_max >= 0, got n_max={n_max}, l_max={l_max}")
        self.n_max, self.l_max, self.w_l = int(n_max), int(l_max), float(w_l)
        self.max_degree = max_degree
        r0 = check_r0(r0, self.elements)
        self.radial = RadialBasis(self.n_max, cutoff, r0, inner=inner)
        self.basis_spec: list[ACEBasisFunction] = enumerate_ace_basis(
            self.elements, self.n_max, self.l_max, max_degree, self.w_l
        )
        if not self.basis_spec:
            raise ValueError(f"max_degree={max_degree} admits no basis function; raise it")
        self.products = InvariantProducts(self.basis_spec, self.elements, self.n_max, self.l_max)
        self.gradients = InvariantGradients(self.basis_spec, self.elements, self.n_max, self.l_max)
        self.readout = BlockReadout(self.n_elements, len(self.basis_spec))
        self._fold: list = [None, None]  # [version, folded readout]: see _folded_readout

    def check_parameters(self, prefix: str = "") -> None:
        """Finite tensors and a valid r0."""
        super().check_parameters(prefix)
        self.radial.check_parameters(self.elements, f"{prefix}radial.")

    @property
    def n_basis(self) -> int:
        """Functions per element block."""
        return len(self.basis_spec)

    def _padded(
        self, graph: Graph, species: torch.Tensor, values: list[torch.Tensor], channel: bool
    ):
        """Scatter per-edge values (n_edges, k) into the per-atom layout (N, width, k); with
        ``channel`` into (N, width, n_elements·k), the neighbour's element picking the block."""
        slots, width = graph.neighbor_slots()
        n_atoms = graph.n_atoms
        out = []
        for v in values:
            if channel:
                sj = species[graph.neighbors]
                p = v.new_zeros(n_atoms, width, self.n_elements, v.shape[1])
                out.append(
                    p.index_put((graph.centers, slots, sj), v).reshape(
                        n_atoms, width, self.n_elements * v.shape[1]
                    )
                )
            else:
                out.append(
                    v.new_zeros(n_atoms, width, v.shape[1]).index_put((graph.centers, slots), v)
                )
        return out

    @staticmethod
    def _split_l(a: torch.Tensor, l_max: int) -> list[torch.Tensor]:
        """(N, C, n_lm) → per l (C, N, 2l+1)."""
        a = a.permute(1, 0, 2)
        return [a[:, :, l * l : (l + 1) * (l + 1)].contiguous() for l in range(l_max + 1)]

    def atomic_basis(self, graph: Graph, species: torch.Tensor) -> list[torch.Tensor]:
        """A per l: a list of (n_elements·n_max, n_atoms, 2l+1) tensors.

        ``A_{(z,n), i, lm} = Σ_{j: z_j = z} R_n(r_ij) Y_lm(r̂_ij)``, summed as one batched
        matrix product over a padded neighbour layout.
        """
        si, sj = species[graph.centers], species[graph.neighbors]
        r = torch.linalg.vector_norm(graph.vectors, dim=1)
        radial = self.radial(r, si, sj)  # (n_edges, n_max)
        ylm = spherical_harmonics(graph.vectors, self.l_max)  # (n_edges, n_lm)
        (padded_r,) = self._padded(graph, species, [radial], channel=True)
        (padded_y,) = self._padded(graph, species, [ylm], channel=False)
        return self._split_l(padded_r.transpose(1, 2) @ padded_y, self.l_max)  # from (N, C, n_lm)

    def _folded_readout(self) -> dict[int, torch.Tensor]:
        """The readout folded per degree (:meth:`InvariantProducts.fold`), kept with the
        model's :attr:`~mlff.protocol.SiteModel.version`: the torch route refolds only after
        a change of parameters."""
        version, folded = self._fold
        if version != self.version:
            folded = self.products.fold(self.readout.weight.detach())
            self._fold[:] = [self.version, folded]
        return folded

    def compiled(
        self, dtype, theta: torch.Tensor | None = None, constant: torch.Tensor | None = None
    ) -> tuple[CompiledPart]:
        """The compiled kernel (:mod:`mlff.kernels.ace`) with readout ``theta``
        (n_elements, n_basis; the model's own by default) and a fixed energy per centre species
        ``constant`` (n_elements,) eV: a stack folds its pair and one-body parts in this way
        (:mod:`mlff.stack`)."""
        tables = ace_kernel_tables(self, dtype, theta, constant)

        def run(edges: EdgeArrays, species: np.ndarray, n_threads: int):
            offsets = edges.offsets
            if offsets is not None:
                return ace_energies_and_grads(
                    tables, edges.vectors, edges.neighbors, offsets, species, n_threads
                )
            # Edges not grouped by centre (graphs from mlff.graph always are): sort them.
            n_atoms = len(species)
            if len(edges.centers) and not 0 <= edges.centers.min() <= edges.centers.max() < n_atoms:
                raise ValueError(
                    f"edge centres must index the {n_atoms} atoms, got values from "
                    f"{edges.centers.min()} to {edges.centers.max()}"
                )
            order = np.argsort(edges.centers, kind="stable")
            centers = edges.centers[order]
            energies, grads = ace_energies_and_grads(
                tables,
                np.ascontiguousarray(edges.vectors[order]),
                np.ascontiguousarray(edges.neighbors[order]),
                center_offsets(centers, n_atoms),
                species,
                n_threads,
            )
            grads[order] = grads.copy()
            return energies, grads

        return (CompiledPart(run, self.cutoff, self.elements, type(self).__name__, "ace", tables),)

    @torch.no_grad()
    def energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) in closed form, without autograd.

        The adjoint H = ∂E/∂A (N, C, n_lm) comes from
        :meth:`InvariantProducts.energy_and_adjoint`. With φ_{n,lm}(r) = R_n(r) Y_lm(r̂):
        ∂E/∂r_e = r̂ Σ_n R'_n Σ_lm H Y_lm + Σ_lm (Σ_n H R_n) ∇Y_lm, both contractions batched
        per atom on the padded layout.
        """
        species = self.species(graph)
        if graph.n_edges == 0:
            energy = self.readout.energies(
                self.products(self.atomic_basis(graph, species)), species
            )
            return energy, torch.zeros_like(graph.vectors)
        si, sj = species[graph.centers], species[graph.neighbors]
        r = torch.linalg.vector_norm(graph.vectors, dim=1)
        radial, d_radial = self.radial.with_derivative(r, si, sj)  # (n_edges, n_max)
        ylm = spherical_harmonics(graph.vectors, self.l_max)  # (n_edges, n_lm)
        padded_r, padded_dr = self._padded(
            graph, species, [radial, d_radial], channel=True
        )  # (N, W, C)
        (padded_y,) = self._padded(graph, species, [ylm], channel=False)  # (N, W, n_lm)
        a_by_l = self._split_l(padded_r.transpose(1, 2) @ padded_y, self.l_max)
        energy, adjoint = self.products.energy_and_adjoint(
            a_by_l, self.readout.weight, species, self._folded_readout()
        )
        h = torch.cat(adjoint, dim=-1).permute(1, 0, 2)  # (N, C, n_lm)
        slots, _ = graph.neighbor_slots()
        along = ((padded_y @ h.transpose(1, 2)) * padded_dr).sum(-1)[
            graph.centers, slots
        ]  # (n_edges,)
        angular = (padded_r @ h)[graph.centers, slots]  # (n_edges, n_lm): Σ_n H R_n
        return energy, along[:, None] * (graph.vectors / r[:, None]) + harmonic_gradient_dot(
            graph.vectors, r, ylm, angular, self.l_max
        )

    def features(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """(B (n_atoms, n_basis), species (n_atoms,))."""
        species = self.species(graph)
        return self.products(self.atomic_basis(graph, species)), species

    def site_energies(self, graph: Graph) -> torch.Tensor:
        b, species = self.features(graph)
        return self.readout.energies(b, species)

    def site_basis(self, graph: Graph) -> torch.Tensor:
        b, species = self.features(graph)
        return self.readout.design(b, species)

    @torch.no_grad()
    def site_basis_jacobian(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """Basis (n_atoms, P) and ∂B_{i(e)}/∂r_e (n_edges, P, 3) in closed form.

        ∂B_ik/∂r_e = Σ_{c,l,m} ∂B_ik/∂A_{i,c,lm} · ∂φ_{c,lm}(r_e)/∂r_e, with the first factor from
        :class:`InvariantGradients` and the second from forward-mode derivatives of the radial
        functions and closed-form gradients of the spherical harmonics, contracted per atom as
        batched matrix products on the padded neighbour layout. Memory:
        (n_atoms, P, max_neighbors, 3).
        """
        species = self.species(graph)
        si, sj = species[graph.centers], species[graph.neighbors]
        features, per_l = self.gradients(self.atomic_basis(graph, species))  # (N, K)
        n_basis, n_atoms = self.n_basis, graph.n_atoms
        slots, width = graph.neighbor_slots()
        # Padded per-atom layout: jac_padded[k, i, slot] = ∂B_ik/∂r_(i, slot).
        jac_padded = graph.vectors.new_zeros(n_basis, n_atoms, width, 3)
        if graph.n_edges:
            r = torch.linalg.vector_norm(graph.vectors, dim=1)
            radial, d_radial = self.radial.with_derivative(r, si, sj)
            ylm, d_ylm = spherical_harmonics_with_gradients(graph.vectors, self.l_max)
            unit = graph.vectors / r[:, None]
            for l, entries in enumerate(per_l):
                if entries is None:
                    continue
                ks, chans, values = entries  # (n_q,), (n_q,), (n_q, N, d)
                sl, d = slice(l * l, (l + 1) ** 2), 2 * l + 1
                dphi = (
                    d_radial[:, :, None, None] * ylm[:, None, sl, None] * unit[:, None, None, :]
                    + radial[:, :, None, None] * d_ylm[:, None, sl, :]
                )  # ∂φ_{n,lm}/∂r_e: (n_edges, n_max, d, 3)
                # Channel (z, n) sees only neighbours of element z: (channel, N, d, slot·3).
                padded = dphi.new_zeros(n_atoms, width, self.n_elements, self.n_max, d, 3)
                padded[graph.centers, slots, sj] = dphi
                padded = (
                    padded.reshape(n_atoms, width, -1, d, 3)
                    .permute(2, 0, 3, 1, 4)
                    .reshape(-1, n_atoms, d, width * 3)
                )
                # One batched product per channel avoids copying the channel block per function.
                for c in torch.unique(chans).tolist():
                    pick = torch.nonzero(chans == c).squeeze(1)
                    rows = torch.bmm(values[pick].transpose(0, 1), padded[c])  # (N, q_c, slot·3)
                    jac_padded.index_add_(
                        0, ks[pick], rows.transpose(0, 1).reshape(-1, n_atoms, width, 3)
                    )
        jac = jac_padded[:, graph.centers, slots, :].transpose(0, 1)  # (n_edges, K, 3)
        # Species blocks: the centre's element picks the columns (BlockReadout layout).
        basis = self.readout.design(features, species)
        if self.n_elements == 1:
            return basis, jac
        full = jac.new_zeros(graph.n_edges, self.n_elements, n_basis, 3)
        full[torch.arange(graph.n_edges, device=jac.device), si] = jac
        return basis, full.reshape(graph.n_edges, self.n_elements * n_basis, 3)

    @torch.no_grad()
    def design_rows(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Basis, force and virial rows (:meth:`LinearSiteModel.design_rows`); on the CPU in
        float64 from the nonzeros of ∂B/∂A and the edges' ∂φ by a compiled kernel
        (:mod:`mlff.kernels.ace_rows`), without the (n_edges, P, 3) Jacobian."""
        if graph.device.type != "cpu" or graph.dtype != torch.float64 or graph.n_edges == 0:
            return super().design_rows(graph)
        from mlff.kernels.ace_rows import ace_force_virial_rows

        species = self.species(graph)
        features, per_l = self.gradients(self.atomic_basis(graph, species))
        basis = self.readout.design(features, species)  # (N, P)
        centers = graph.centers
        order = None
        if bool((centers[1:] < centers[:-1]).any()):  # mlff's graphs are grouped; others sorted
            order = torch.argsort(centers, stable=True)
        pick = (lambda t: t) if order is None else (lambda t: t[order])
        vectors, neighbors = pick(graph.vectors), pick(graph.neighbors)
        si, sj = species[pick(centers)], species[neighbors]
        r = torch.linalg.vector_norm(vectors, dim=1)
        radial, d_radial = self.radial.with_derivative(r, si, sj)  # (n_edges, n_max)
        ylm, d_ylm = spherical_harmonics_with_gradients(vectors, self.l_max)  # (E, n_lm), (…, 3)
        ent_k, ent_c, ent_lm, values = [], [], [], []
        for l, entries in enumerate(per_l):
            if entries is None:
                continue
            ks, chans, vals = entries  # (n_q,), (n_q,), (n_q, N, d)
            d = 2 * l + 1
            ent_k.append(ks.repeat_interleave(d))
            ent_c.append(chans.repeat_interleave(d))
            ent_lm.append((l * l + torch.arange(d)).repeat(len(ks)))
            values.append(vals.permute(0, 2, 1).reshape(-1, graph.n_atoms))
        counts = torch.bincount(centers, minlength=graph.n_atoms)
        offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        forces, virial = ace_force_virial_rows(
            offsets.numpy(),
            neighbors.numpy(),
            np.ascontiguousarray(vectors.numpy()),
            species.numpy(),
            (np.ascontiguousarray(radial.numpy()), np.ascontiguousarray(d_radial.numpy())),
            (np.ascontiguousarray(ylm.numpy()), np.ascontiguousarray(d_ylm.numpy())),
            tuple(
                np.ascontiguousarray(torch.cat(x).numpy()) for x in (ent_k, ent_c, ent_lm, values)
            ),
            self.n_basis,
            self.n_elements,
        )
        return basis, torch.from_numpy(forces), torch.from_numpy(virial)

    def basis_degrees(self) -> torch.Tensor:
        """Σ (n + w_l·l) of each function, repeated for every element block."""
        degrees = torch.tensor([f.degree for f in self.basis_spec], dtype=torch.float64)
        return degrees.repeat(self.n_elements)

    def describe_basis(self) -> str:
        """A readable table: counts per correlation order and the first functions."""
        from collections import Counter

        counts = Counter(f.order for f in self.basis_spec)
        lines = [
            f"ACE basis: {self.n_basis} functions per element × {self.n_elements} element(s) = "
            f"{self.length_basis()} parameters",
            f"  n_max={self.n_max} l_max={self.l_max} w_l={self.w_l} max_degree={self.max_degree}",
        ]
        lines += [f"  correlation order {nu}: {counts[nu]} functions" for nu in sorted(counts)]
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return (
            f"elements={list(self.elements)}, cutoff={self.cutoff}, n_max={self.n_max}, "
            f"l_max={self.l_max}, max_degree={self.max_degree}, n_basis={self.n_basis}"
        )
