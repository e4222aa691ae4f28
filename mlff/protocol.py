"""The site-energy protocol every mlff model speaks, and the conventions it rests on.

A model maps a :class:`~mlff.graph.Graph` to site energies ``E_i`` (eV). The total energy is
``E = Σ_i E_i``. Derivatives are taken once, with respect to the edge vectors
``r_ij = x_j - x_i + S·cell``; this module owns how they become forces and stress:

* with ``g_e = ∂E/∂r_e`` for edge ``e = (i, j)``: ``F_i += g_e`` and ``F_j -= g_e``;
* the virial is ``W = -Σ_e g_e ⊗ r_e``; the ASE stress is ``-W / V`` in Voigt order
  ``[xx, yy, zz, yz, xz, xy]``.

Locality: a site energy ``E_i`` depends only on the edges whose centre is ``i``. Hence
``∂E/∂r_e = ∂E_{i(e)}/∂r_e``, which is what lets the basis Jacobian be one row per edge.

Linear models are linear in their parameters θ: ``E_i = site_basis(graph)[i] · θ + fixed_i``.
:class:`BlockReadout` owns the parameter layout ``θ[b·n_features + k]`` (block ``b`` is the
centre element for many-body models and the unordered element pair for pair models).
"""

from __future__ import annotations

import math
import numbers

import numba
import numpy as np
import torch
from torch import nn

from mlff.elements import normalize_elements, species_lookup, species_of
from mlff.graph import EdgeArrays, Graph

__all__ = [
    "SiteModel",
    "LinearSiteModel",
    "BlockReadout",
    "ReadoutModel",
    "forces_from_edge_grads",
    "virial_from_edge_grads",
    "stress_from_virial",
    "forces_from_edge_arrays",
    "forces_virial_and_stress_from_edge_arrays",
    "virial_from_edge_arrays",
    "stress_from_virial_array",
    "BACKENDS",
]

#: Evaluation backends of :meth:`SiteModel.site_energies_and_grads`. ``"auto"``: a model's
#: compiled CPU kernel where it has one and the graph is on the CPU, torch otherwise;
#: ``"torch"``: always torch (required by ``torch.compile``); ``"numba"``: the compiled CPU
#: kernel, an error on another device. Models without a kernel always run torch.
BACKENDS = ("auto", "torch", "numba")


#: Positions of [xx, yy, zz, yz, xz, xy] in a row-major flattened 3x3 tensor.
_VOIGT = [0, 4, 8, 5, 2, 1]
#: The same components as (row, column) pairs, for the compiled kernels.
_VOIGT_PAIRS = tuple(divmod(k, 3) for k in _VOIGT)


@numba.njit(cache=True, nogil=True)
def _scatter_forces(centers, neighbors, edge_grads, vectors, forces, virial):
    """The CPU form of the sign convention above, one pass over the edges: forces (n_atoms, 3)
    and, unless ``virial`` has no rows, ``virial = -Σ_e g_e ⊗ r_e`` (3, 3) (summed in float64).

    The sums that every edge adds to (the virial, and the centre's force while its edges run,
    as they do in graphs grouped by centre) are kept in registers: through memory, each edge
    waited on the previous one's stores (1.8x at 64 Si atoms). Any edge order is correct."""
    want_virial = virial.shape[0] > 0
    forces[:] = 0.0
    w00 = w01 = w02 = w10 = w11 = w12 = w20 = w21 = w22 = 0.0
    n_edges = edge_grads.shape[0]
    current = centers[0] if n_edges else 0
    fx = fy = fz = 0.0
    for e in range(n_edges):
        i, j = centers[e], neighbors[e]
        if i != current:
            forces[current, 0] += fx
            forces[current, 1] += fy
            forces[current, 2] += fz
            current, fx, fy, fz = i, 0.0, 0.0, 0.0
        gx, gy, gz = edge_grads[e, 0], edge_grads[e, 1], edge_grads[e, 2]
        fx += gx
        fy += gy
        fz += gz
        forces[j, 0] -= gx
        forces[j, 1] -= gy
        forces[j, 2] -= gz
        if want_virial:
            vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
            w00 += gx * vx
            w01 += gx * vy
            w02 += gx * vz
            w10 += gy * vx
            w11 += gy * vy
            w12 += gy * vz
            w20 += gz * vx
            w21 += gz * vy
            w22 += gz * vz
    if n_edges:
        forces[current, 0] += fx
        forces[current, 1] += fy
        forces[current, 2] += fz
    if want_virial:
        virial[0, 0], virial[0, 1], virial[0, 2] = -w00, -w01, -w02
        virial[1, 0], virial[1, 1], virial[1, 2] = -w10, -w11, -w12
        virial[2, 0], virial[2, 1], virial[2, 2] = -w20, -w21, -w22


def forces_from_edge_arrays(
    edge_grads: np.ndarray, centers: np.ndarray, neighbors: np.ndarray, n_atoms: int
) -> np.ndarray:
    """:func:`forces_from_edge_grads` on numpy arrays: (n_atoms, 3) eV/Å from (n_edges, 3)."""
    # A compiled pass is several times faster than index_add_ (or bincount) on a CPU.
    forces = np.empty((n_atoms, 3), dtype=edge_grads.dtype)
    _scatter_forces(
        centers, neighbors, edge_grads, edge_grads, forces, np.empty((0, 3), dtype=edge_grads.dtype)
    )
    return forces


@numba.njit(cache=True, nogil=True)
def _scatter_forces_and_stress(
    centers, neighbors, edge_grads, vectors, volume, forces, virial, stress
):
    """:func:`_scatter_forces`, then the stress (6,) of :func:`stress_from_virial_array`."""
    _scatter_forces(centers, neighbors, edge_grads, vectors, forces, virial)
    for k in range(6):
        a, b = _VOIGT_PAIRS[k]
        stress[k] = -0.5 * (virial[a, b] + virial[b, a]) / volume


def forces_virial_and_stress_from_edge_arrays(
    edge_grads: np.ndarray,
    centers: np.ndarray,
    neighbors: np.ndarray,
    vectors: np.ndarray,
    n_atoms: int,
    volume: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`forces_from_edge_arrays` (n_atoms, 3) eV/Å, :func:`virial_from_edge_arrays`
    (3, 3) eV and the stress (6,) eV/Å³ of a cell of ``volume`` Å³ (:func:`stress_from_virial_array`)
    in one compiled pass over the edges: a periodic MD step caches the stress with the forces."""
    forces = np.empty((n_atoms, 3), dtype=edge_grads.dtype)
    virial = np.empty((3, 3), dtype=edge_grads.dtype)
    stress = np.empty(6, dtype=edge_grads.dtype)
    _scatter_forces_and_stress(
        centers, neighbors, edge_grads, vectors, float(volume), forces, virial, stress
    )
    return forces, virial, stress


def virial_from_edge_arrays(edge_grads: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """:func:`virial_from_edge_grads` on numpy arrays: (3, 3) eV."""
    return -(edge_grads.T @ vectors)


def forces_from_edge_grads(edge_grads: torch.Tensor, graph: Graph) -> torch.Tensor:
    """Forces (n_atoms, 3), eV/Å, from ``g = ∂E/∂r`` of shape (n_edges, 3).

    Trailing dimensions pass through: (n_edges, P, 3) gives (n_atoms, P, 3).
    """
    if edge_grads.device.type == "cpu" and edge_grads.ndim == 2 and not edge_grads.requires_grad:
        return torch.from_numpy(
            forces_from_edge_arrays(
                edge_grads.numpy(), graph.centers.numpy(), graph.neighbors.numpy(), graph.n_atoms
            )
        )
    forces = edge_grads.new_zeros((graph.n_atoms,) + tuple(edge_grads.shape[1:]))
    forces.index_add_(0, graph.centers, edge_grads)
    forces.index_add_(0, graph.neighbors, edge_grads, alpha=-1.0)
    return forces


def virial_from_edge_grads(edge_grads: torch.Tensor, graph: Graph) -> torch.Tensor:
    """Virial ``W = -Σ_e g_e ⊗ r_e`` (3, 3), eV."""
    vectors = graph.vectors.detach()
    if (
        edge_grads.device.type == "cpu"
        and edge_grads.ndim == 2
        and not edge_grads.requires_grad
        and edge_grads.dtype == vectors.dtype
    ):
        # numpy's 3x3 product costs a fraction of torch's dispatch on an MD step.
        return torch.from_numpy(virial_from_edge_arrays(edge_grads.numpy(), vectors.numpy()))
    return -(edge_grads.transpose(0, 1) @ graph.vectors.detach())


def stress_from_virial(virial: torch.Tensor, volume: torch.Tensor | float) -> torch.Tensor:
    """ASE stress (6,) eV/Å³ in Voigt order [xx, yy, zz, yz, xz, xy] from a (3, 3) virial.

    Also accepts a batch of virials (..., 3, 3) → (..., 6).
    """
    if (
        virial.device.type == "cpu"
        and virial.ndim == 2
        and not virial.requires_grad
        and not torch.is_tensor(volume)
    ):
        return torch.from_numpy(stress_from_virial_array(virial.numpy(), volume))
    sigma = (virial + virial.transpose(-1, -2)) * (-0.5 / volume)
    return sigma.flatten(-2)[..., _VOIGT]


def stress_from_virial_array(virial: np.ndarray, volume: float) -> np.ndarray:
    """:func:`stress_from_virial` for a numpy (3, 3) virial: (6,) eV/Å³, Voigt order."""
    return ((virial + virial.T) * (-0.5 / float(volume))).reshape(9)[_VOIGT]


class SiteModel(nn.Module):
    """Base class: a model with a cutoff (Å), a list of elements and site energies.

    Subclasses implement :meth:`site_energies`. Tensors live on the model's dtype/device;
    a graph on another dtype or device is refused by :meth:`species`.
    """

    def __init__(self, elements, cutoff: float):
        super().__init__()
        if not (isinstance(cutoff, numbers.Real) and math.isfinite(cutoff) and cutoff >= 0):
            raise ValueError(f"cutoff must be a non-negative number of Å, got {cutoff!r}")
        self.elements: tuple[str, ...] = normalize_elements(elements)
        self.cutoff = float(cutoff)
        self.register_buffer("species_table", species_lookup(self.elements), persistent=False)
        # Holds the model's dtype/device even for models without float parameters.
        self.register_buffer("_dtype_probe", torch.zeros((), dtype=torch.float64), persistent=False)
        self.backend = "auto"

    def check_parameters(self, prefix: str = "") -> None:
        """Raise ValueError naming the first state tensor (``prefix`` + its key) that is not
        finite. ``load_state_dict`` bypasses the constructors' checks, so a loaded model is
        checked here; subclasses add the checks their constructors make."""
        for name, tensor in self.state_dict(prefix=prefix).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"tensor {name!r} contains NaN or inf")

    def set_backend(self, backend: str) -> SiteModel:
        """Choose how :meth:`site_energies_and_grads` runs (one of :data:`BACKENDS`), for this
        model and every model inside it. Not part of a checkpoint. Returns ``self``."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        for module in self.modules():
            if isinstance(module, SiteModel):
                module.backend = backend
        return self

    def _use_kernel(self, graph: Graph) -> bool:
        """Whether a model that has a compiled CPU kernel should use it for ``graph``."""
        if self.backend == "torch":
            return False
        if graph.device.type != "cpu":
            if self.backend == "numba":
                raise ValueError(
                    f"backend 'numba' runs on the CPU only, but the graph is on {graph.device}; "
                    "use backend='auto' or 'torch' on this device"
                )
            return False
        return True

    def has_kernels(self) -> bool:
        """Whether :meth:`kernel_energies_and_grads` runs (the model, and every part of it,
        has a compiled CPU kernel) and the backend allows it."""
        return False

    def kernel_energies_and_grads(self, edges: EdgeArrays) -> tuple[np.ndarray, np.ndarray] | None:
        """E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) as numpy arrays, from the compiled CPU
        kernel, for a calculator's CPU path (∂E/∂r_e in the edges' dtype; E_i in it or in
        float64); ``None`` where this call needs the torch path
        (e.g. the pair model's ZBL core). Only for models whose :meth:`has_kernels` is true."""
        raise NotImplementedError(f"{type(self).__name__} has no compiled CPU kernel")

    def kernel_species(self, edges: EdgeArrays) -> np.ndarray:
        """(n_atoms,) species indices of ``edges``' atoms (numpy), cached with the atoms;
        raises for an element the model lacks, as :meth:`species` does."""
        key = ("species", tuple(self.elements))
        species = edges.cache.get(key)
        if species is None:
            table = self.species_table.cpu()
            species = species_of(
                torch.from_numpy(edges.numbers), table, self.elements, type(self).__name__
            ).numpy()
            edges.cache[key] = species
        return species

    @property
    def n_elements(self) -> int:
        return len(self.elements)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype_probe.dtype

    @property
    def device(self) -> torch.device:
        return self._dtype_probe.device

    def species(self, graph: Graph) -> torch.Tensor:
        """(n_atoms,) species index of each atom; checks elements, dtype and device."""
        if graph.dtype != self.dtype or graph.device != self.device:
            raise ValueError(
                f"graph is {graph.dtype} on {graph.device} but {type(self).__name__} is "
                f"{self.dtype} on {self.device}; build the graph with the model's dtype and "
                "device, or move the model with .to(dtype=..., device=...)"
            )
        if graph.cutoff < self.cutoff - 1e-9:
            raise ValueError(
                f"graph was built with cutoff {graph.cutoff} Å but {type(self).__name__} needs "
                f"{self.cutoff} Å; build the graph at the model's cutoff or larger"
            )
        # Cached per element list with the atoms: the parts of a stack share one lookup.
        cache, key = graph.atom_cache(), ("species", tuple(self.elements))
        species = cache.get(key)
        if species is None:
            species = species_of(
                graph.numbers, self.species_table, self.elements, type(self).__name__
            )
            cache[key] = species
        return species

    def site_energies(self, graph: Graph) -> torch.Tensor:
        """(n_atoms,) site energies, eV."""
        raise NotImplementedError

    def energy(self, graph: Graph) -> torch.Tensor:
        """Total energy, eV (0-dim)."""
        return self.site_energies(graph).sum()

    def site_energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """Site energies (n_atoms,) eV and ``g = ∂E/∂r_ij`` (n_edges, 3) eV/Å.

        This is what calculators call. The generic version takes one autograd pass; models
        override it with closed forms that build no autograd graph. Both tensors are new:
        the caller owns them (a :class:`~mlff.stack.Stack` sums its parts' gradients in place).
        """
        g = graph.differentiable()
        with torch.enable_grad():
            site = self.site_energies(g)
            energy = site.sum()
            if not energy.requires_grad:  # a model with no edge dependence
                return site.detach(), torch.zeros_like(g.vectors)
            (grads,) = torch.autograd.grad(energy, g.vectors)
        return site.detach(), grads

    def site_grads(self, graph: Graph) -> torch.Tensor:
        """``∂E/∂r_ij`` (n_edges, 3), eV/Å, by one autograd pass (the reference for closed forms)."""
        return SiteModel.site_energies_and_grads(self, graph)[1]


class LinearSiteModel(SiteModel):
    """A site model linear in its parameters: ``E_i = site_basis[i] · θ + fixed_site_energies[i]``."""

    def site_basis(self, graph: Graph) -> torch.Tensor:
        """(n_atoms, length_basis) design columns of each site."""
        raise NotImplementedError

    def fixed_site_energies(self, graph: Graph) -> torch.Tensor:
        """(n_atoms,) energies not carried by θ (priors, references), eV."""
        return torch.zeros(graph.n_atoms, dtype=graph.dtype, device=graph.device)

    def length_basis(self) -> int:
        raise NotImplementedError

    def get_linear_parameters(self) -> torch.Tensor:
        """θ (length_basis,), a copy."""
        raise NotImplementedError

    def basis_degrees(self) -> torch.Tensor:
        """(length_basis,) roughness of each column (polynomial degree); 1 where unknown."""
        return torch.ones(self.length_basis(), dtype=torch.float64)

    def set_linear_parameters(self, theta) -> None:
        raise NotImplementedError

    def site_energies(self, graph: Graph) -> torch.Tensor:
        theta = self.get_linear_parameters().to(dtype=graph.dtype, device=graph.device)
        return self.site_basis(graph) @ theta + self.fixed_site_energies(graph)

    def site_basis_jacobian(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """The basis (n_atoms, P) and ``∂B_{i(e),k}/∂r_e`` (n_edges, P, 3).

        Generic version: one batched backward pass with P cotangents. By locality, the
        derivative of the column sums Σ_i B_ik with respect to r_e is the per-edge Jacobian.
        """
        g = graph.differentiable()
        with torch.enable_grad():
            basis = self.site_basis(g)  # (n_atoms, P)
            n_basis = basis.shape[1]
            if n_basis == 0 or g.n_edges == 0 or not basis.requires_grad:
                jac = torch.zeros(g.n_edges, n_basis, 3, dtype=g.dtype, device=g.device)
                return basis.detach(), jac
            totals = basis.sum(0)  # (P,)
            eye = torch.eye(n_basis, dtype=g.dtype, device=g.device)
            (jac,) = torch.autograd.grad(
                totals, g.vectors, grad_outputs=eye, is_grads_batched=True, allow_unused=True
            )  # (P, n_edges, 3)
        if jac is None:
            jac = torch.zeros(n_basis, g.n_edges, 3, dtype=g.dtype, device=g.device)
        return basis.detach(), jac.permute(1, 0, 2).contiguous()


class ReadoutModel(LinearSiteModel):
    """A linear model whose θ is one :class:`BlockReadout` held in ``self.readout``."""

    readout: BlockReadout

    def length_basis(self) -> int:
        return len(self.readout)

    def get_linear_parameters(self) -> torch.Tensor:
        return self.readout.get()

    def set_linear_parameters(self, theta) -> None:
        self.readout.set(theta, type(self).__name__)


class BlockReadout(nn.Module):
    """Linear readout with parameters in blocks: ``θ[b·n_features + k]``.

    Each site (or edge) belongs to one block ``b`` and has features ``x`` (…, n_features);
    its energy is ``x · θ_b``. This class is the one place that layout is written down.
    """

    def __init__(self, n_blocks: int, n_features: int):
        super().__init__()
        self.n_blocks = int(n_blocks)
        self.n_features = int(n_features)
        self.register_buffer(
            "weight", torch.zeros(self.n_blocks, self.n_features, dtype=torch.float64)
        )

    def __len__(self) -> int:
        return self.n_blocks * self.n_features

    def energies(self, features: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """(n,) energies from features (n, n_features) and block ids (n,)."""
        return (features * self.weight[blocks]).sum(-1)

    def design(self, features: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """(n, n_blocks·n_features) design rows: features placed in their block's columns."""
        n = features.shape[0]
        out = features.new_zeros(n, self.n_blocks, self.n_features)
        out[torch.arange(n, device=features.device), blocks] = features
        return out.reshape(n, self.n_blocks * self.n_features)

    def get(self) -> torch.Tensor:
        return self.weight.detach().reshape(-1).clone()

    def set(self, theta, owner: str) -> None:
        theta = torch.as_tensor(theta, dtype=self.weight.dtype, device=self.weight.device)
        if theta.shape != (len(self),):
            raise ValueError(
                f"{owner} expects θ of shape ({len(self)},) = {self.n_blocks} blocks × "
                f"{self.n_features} features, got {tuple(theta.shape)}"
            )
        if not bool(torch.isfinite(theta).all()):
            raise ValueError(f"θ for {owner} contains NaN or inf")
        self.weight.copy_(theta.reshape(self.n_blocks, self.n_features))
