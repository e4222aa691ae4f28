"""Many-body atomic cluster expansion (ACE), linear in its per-element readout."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from e3nn import o3

from mlff.graph import Graph
from mlff.models.ace_basis import ACEBasisFunction, coupling_tensor, enumerate_ace_basis
from mlff.models.radial import RadialBasis, default_r0
from mlff.protocol import BlockReadout, LinearSiteModel

__all__ = ["ACEModel", "DEFAULT_MAX_DEGREE"]

DEFAULT_MAX_DEGREE: dict[int, float] = {1: 10, 2: 15, 3: 13}


class ACEModel(LinearSiteModel):
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
            ``{1: 10, 2: 15, 3: 13}`` gives 311 functions per element for one element.
        w_l: weight of l in the degree.
        r0: (n_elements, n_elements) bond-length scale of the distance transform, Å.
    """

    def __init__(
        self,
        elements,
        cutoff: float = 5.0,
        n_max: int = 10,
        l_max: int = 4,
        max_degree: Mapping[int, float] | None = None,
        w_l: float = 1.5,
        r0: torch.Tensor | None = None,
    ):
        super().__init__(elements, cutoff)
        max_degree = dict(DEFAULT_MAX_DEGREE if max_degree is None else max_degree)
        bad = [nu for nu in max_degree if nu not in (1, 2, 3, 4)]
        if bad or not max_degree:
            raise ValueError(
                f"max_degree keys are correlation orders; got {sorted(max_degree)}, accepted 1-4"
            )
        if l_max < 0 or n_max < 1:
            raise ValueError(f"need n_max >= 1 and l_max >= 0, got n_max={n_max}, l_max={l_max}")
        self.n_max, self.l_max, self.w_l = int(n_max), int(l_max), float(w_l)
        self.max_degree = max_degree
        r0 = default_r0(self.elements) if r0 is None else torch.as_tensor(r0, dtype=torch.float64)
        self.radial = RadialBasis(self.n_max, cutoff, r0)
        self.basis_spec: list[ACEBasisFunction] = enumerate_ace_basis(
            self.elements, self.n_max, self.l_max, max_degree, self.w_l
        )
        if not self.basis_spec:
            raise ValueError(f"max_degree={max_degree} admits no basis function; raise it")
        self._build_groups()
        self.readout = BlockReadout(self.n_elements, len(self.basis_spec))

    def _build_groups(self) -> None:
        """Index tensors per l-signature group; columns follow ``basis_spec`` order."""
        symbol_index = {e: s for s, e in enumerate(self.elements)}
        self._groups: list[tuple[tuple[int, ...], int]] = []  # (ls, n_functions)
        start = 0
        spec = self.basis_spec
        while start < len(spec):
            key = (spec[start].ls, spec[start].coupling)
            stop = start
            while stop < len(spec) and (spec[stop].ls, spec[stop].coupling) == key:
                stop += 1
            g = len(self._groups)
            channels = torch.tensor(
                [[symbol_index[z] * self.n_max + n - 1 for z, n, _ in f.factors] for f in spec[start:stop]],
                dtype=torch.long,
            )  # (K, ν)
            self.register_buffer(f"_channels_{g}", channels.t().contiguous(), persistent=False)
            self.register_buffer(f"_coupling_{g}", coupling_tensor(*key).clone(), persistent=False)
            self._groups.append((key[0], stop - start))
            start = stop

    @property
    def n_basis(self) -> int:
        """Functions per element block."""
        return len(self.basis_spec)

    def atomic_basis(self, graph: Graph, species: torch.Tensor) -> torch.Tensor:
        """A (n_atoms, n_elements·n_max, (l_max+1)²)."""
        si, sj = species[graph.centers], species[graph.neighbors]
        r = torch.linalg.vector_norm(graph.vectors, dim=1)
        radial = self.radial(r, si, sj)  # (n_edges, n_max)
        ylm = o3.spherical_harmonics(
            list(range(self.l_max + 1)), graph.vectors, normalize=True, normalization="component"
        )  # (n_edges, (l_max+1)²)
        phi = radial[:, :, None] * ylm[:, None, :]  # (n_edges, n_max, n_lm)
        n_lm = (self.l_max + 1) ** 2
        a = phi.new_zeros(graph.n_atoms * self.n_elements, self.n_max, n_lm)
        a.index_add_(0, graph.centers * self.n_elements + sj, phi)
        return a.reshape(graph.n_atoms, self.n_elements * self.n_max, n_lm)

    def invariants(self, a: torch.Tensor) -> torch.Tensor:
        """B (n_atoms, n_basis) from A (n_atoms, channels, n_lm)."""
        n_atoms = a.shape[0]
        blocks = [a[:, :, l * l : (l + 1) * (l + 1)] for l in range(self.l_max + 1)]
        out = []
        for g, (ls, k) in enumerate(self._groups):
            channels = getattr(self, f"_channels_{g}")  # (ν, K)
            coupling = getattr(self, f"_coupling_{g}")
            xs = [blocks[l].index_select(1, channels[t]) for t, l in enumerate(ls)]  # (N, K, 2l+1)
            order = len(ls)
            if order == 1:
                b = xs[0][:, :, 0]
            elif order == 2:
                b = (xs[0] * xs[1]).sum(-1)
            elif order == 3:
                d1, d2, d3 = coupling.shape
                pair = (xs[0][..., :, None] * xs[1][..., None, :]).reshape(n_atoms, k, d1 * d2)
                b = ((pair @ coupling.reshape(d1 * d2, d3)) * xs[2]).sum(-1)
            else:
                d1, d2, d3, d4 = coupling.shape
                left = (xs[0][..., :, None] * xs[1][..., None, :]).reshape(n_atoms, k, d1 * d2)
                right = (xs[2][..., :, None] * xs[3][..., None, :]).reshape(n_atoms, k, d3 * d4)
                b = ((left @ coupling.reshape(d1 * d2, d3 * d4)) * right).sum(-1)
            out.append(b)
        return torch.cat(out, dim=1)

    def features(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """(B (n_atoms, n_basis), species (n_atoms,))."""
        species = self.species(graph)
        return self.invariants(self.atomic_basis(graph, species)), species

    def site_energies(self, graph: Graph) -> torch.Tensor:
        b, species = self.features(graph)
        return self.readout.energies(b, species)

    def site_basis(self, graph: Graph) -> torch.Tensor:
        b, species = self.features(graph)
        return self.readout.design(b, species)

    def length_basis(self) -> int:
        return len(self.readout)

    def get_linear_parameters(self) -> torch.Tensor:
        return self.readout.get()

    def set_linear_parameters(self, theta) -> None:
        self.readout.set(theta, type(self).__name__)

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
