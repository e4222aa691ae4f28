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
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from mlff.elements import normalize_elements, species_lookup, species_of
from mlff.graph import EdgeArrays, Graph
from mlff.kernels.scatter import scatter_forces, scatter_forces_and_stress

__all__ = [
    "VOIGT_PAIRS",
    "BlockReadout",
    "CompiledPart",
    "LinearSiteModel",
    "ReadoutModel",
    "SiteModel",
    "forces_and_stress",
    "forces_from_edge_grads",
    "stress_from_virial",
    "virial_from_edge_grads",
    "virial_from_stress",
    "voigt",
    "energies_and_edge_grads",
]

#: ASE's Voigt order [xx, yy, zz, yz, xz, xy] as (row, column) pairs of the 3x3 tensor
#: (the tests check it against ``ase.stress.full_3x3_to_voigt_6_stress``).
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: The same components in a row-major flattened 3x3 tensor, and their transposes.
_FLAT = np.array([3 * a + b for a, b in VOIGT_PAIRS])
_FLAT_T = np.array([3 * b + a for a, b in VOIGT_PAIRS])

Edges = Graph | EdgeArrays


def forces_from_edge_grads(edge_grads, edges: Edges):
    """Forces (n_atoms, 3) eV/Å from ``g = ∂E/∂r`` (n_edges, 3): ``F_i += g_e``, ``F_j -= g_e``.

    numpy or torch, as ``edge_grads`` is. Trailing dimensions pass through:
    (n_edges, P, 3) gives (n_atoms, P, 3) (the design rows of fitting)."""
    if isinstance(edge_grads, np.ndarray):
        if edge_grads.ndim > 2:
            forces = np.zeros((edges.n_atoms,) + edge_grads.shape[1:], dtype=edge_grads.dtype)
            np.add.at(forces, edges.centers, edge_grads)
            np.subtract.at(forces, edges.neighbors, edge_grads)
            return forces
        forces = np.empty((edges.n_atoms, 3), dtype=edge_grads.dtype)
        scatter_forces(edges.centers, edges.neighbors, edge_grads, edges.vectors, forces, None)
        return forces
    if edge_grads.device.type == "cpu" and edge_grads.ndim == 2 and not edge_grads.requires_grad:
        # The compiled pass is several times faster than index_add_ on a CPU.
        arrays = (edges.centers.numpy(), edges.neighbors.numpy(), edge_grads.numpy())
        forces = np.empty((edges.n_atoms, 3), dtype=arrays[2].dtype)
        scatter_forces(*arrays, arrays[2], forces, None)
        return torch.from_numpy(forces)
    forces = edge_grads.new_zeros((edges.n_atoms,) + tuple(edge_grads.shape[1:]))
    forces.index_add_(0, edges.centers, edge_grads)
    forces.index_add_(0, edges.neighbors, edge_grads, alpha=-1.0)
    return forces


def virial_from_edge_grads(edge_grads, edges: Edges):
    """Virial ``W = -Σ_e g_e ⊗ r_e`` (3, 3) eV, numpy or torch as ``edge_grads`` is.

    Trailing dimensions pass through: (n_edges, P, 3) gives (P, 3, 3)."""
    vectors = edges.vectors
    if isinstance(edge_grads, np.ndarray):
        return -np.einsum("e...a,eb->...ab", edge_grads, vectors)
    return -torch.einsum("e...a,eb->...ab", edge_grads, vectors.detach())


def voigt(tensor):
    """The Voigt vector (..., 6) [xx, yy, zz, yz, xz, xy] of (..., 3, 3) tensors, the
    off-diagonal pairs averaged, as ``ase.stress.full_3x3_to_voigt_6_stress`` gives it; numpy
    or torch. (ASE's helper reverses the leading axes of a batch and is slow on the MD hot
    path, so the order is applied here by indexing.)"""
    flat = tensor.reshape(tensor.shape[:-2] + (9,))
    if isinstance(tensor, np.ndarray):
        return 0.5 * (flat.take(_FLAT, axis=-1) + flat.take(_FLAT_T, axis=-1))
    return 0.5 * (flat[..., _FLAT.tolist()] + flat[..., _FLAT_T.tolist()])


def stress_from_virial(virial, volume: float):
    """ASE stress (..., 6) eV/Å³, Voigt order, from virials (..., 3, 3) eV of a cell of
    ``volume`` Å³: ``σ = -W / V``."""
    return voigt(virial) * (-1.0 / volume)


def virial_from_stress(stress, volume: float):
    """The virial (..., 6) eV in Voigt order of ASE stresses (..., 6) eV/Å³ of a cell of
    ``volume`` Å³: ``W = -σ V``, the inverse of :func:`stress_from_virial` (fitting targets)."""
    return stress * (-volume)


def forces_and_stress(
    edge_grads: np.ndarray, edges: EdgeArrays, volume: float
) -> tuple[np.ndarray, np.ndarray]:
    """Forces (n_atoms, 3) eV/Å and the stress (6,) eV/Å³ of a cell of ``volume`` Å³ in one
    compiled pass over the edges (the virial summed in float64): an MD step on a periodic
    cell keeps the stress with the forces."""
    forces = np.empty((edges.n_atoms, 3), dtype=edge_grads.dtype)
    stress = np.empty(6)
    # σ = -voigt(W) / V, with the Voigt order passed in: the kernel applies it, this owns it.
    scatter_forces_and_stress(
        edges.centers, edges.neighbors, edge_grads, edges.vectors, _FLAT, volume, forces, stress
    )
    return forces, stress


def energies_and_edge_grads(
    site_energies: Callable[[Graph], torch.Tensor], graph: Graph
) -> tuple[torch.Tensor, torch.Tensor]:
    """``site_energies(graph)`` (n_atoms,) eV and ``∂E/∂r_ij`` (n_edges, 3) eV/Å of their sum
    by one autograd pass: the generic route, and the reference the closed forms are tested
    against. Both tensors are new and detached."""
    g = graph.differentiable()
    with torch.enable_grad():
        site = site_energies(g)
        energy = site.sum()
        if not energy.requires_grad:  # no edge dependence
            return site.detach(), torch.zeros_like(g.vectors)
        (grads,) = torch.autograd.grad(energy, g.vectors)
    return site.detach(), grads


class CompiledPart(NamedTuple):
    """A model's compiled CPU kernel bound to tables of its current parameters
    (:meth:`SiteModel.compiled`): ``run(edges, species, n_threads)`` gives E_i (n_atoms,)
    and ∂E/∂r_e (n_edges, 3) as new numpy arrays for the edges shorter than ``cutoff`` Å, or
    ``None`` where it adds nothing (a ZBL core that no edge reaches); ``species`` (n_atoms,)
    int64 indexes ``elements``; ``owner`` names the part in errors.

    ``kind`` and ``tables`` say what ``run`` computes, for exports that run it elsewhere
    (:mod:`mlff.export`): ``"onebody"`` (E0 (n_elements,) eV), ``"pair"``
    (:class:`~mlff.kernels.pair.PairTables`), ``"ace"`` (:class:`~mlff.kernels.ace.ACETables`)
    or ``"zbl"`` (:class:`~mlff.models.repulsion.ZBLTables`)."""

    run: Callable[[EdgeArrays, np.ndarray, int], tuple[np.ndarray, np.ndarray] | None]
    cutoff: float
    elements: tuple[str, ...]
    owner: str
    kind: str
    tables: Any


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
        self._parameter_version = 0

    @property
    def version(self) -> int:
        """Counts the changes of this model's parameters made through its API:
        ``set_linear_parameters``, ``load_state_dict``, dtype and device moves, and
        :meth:`parameters_changed`. A calculator rebuilds its evaluator when it moves.
        Tensors edited in place (``.data``, ``weight[k] = …``) are not seen: call
        :meth:`parameters_changed` after such an edit."""
        return self._parameter_version

    def parameters_changed(self) -> None:
        """Declare that this model's parameters changed (see :attr:`version`)."""
        self._parameter_version += 1

    def __setattr__(self, name: str, value) -> None:
        # A new submodule, buffer or setting on the model itself counts as a change.
        super().__setattr__(name, value)
        if name != "_parameter_version" and "_parameter_version" in self.__dict__:
            self.parameters_changed()

    def _apply(self, fn, recurse: bool = True):
        # .to(), .float(), .double(), .cuda() all come through here.
        out = super()._apply(fn, recurse)
        self.parameters_changed()
        return out

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        # Called for every module of the tree that load_state_dict visits.
        super()._load_from_state_dict(*args, **kwargs)
        self.parameters_changed()

    def check_parameters(self, prefix: str = "") -> None:
        """Raise ValueError naming the first state tensor (``prefix`` + its key) that is not
        finite. ``load_state_dict`` bypasses the constructors' checks, so a loaded model is
        checked here; subclasses add the checks their constructors make."""
        for name, tensor in self.state_dict(prefix=prefix).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"tensor {name!r} contains NaN or inf")

    def compiled(self, dtype: np.dtype) -> tuple[CompiledPart, ...] | None:
        """This model's compiled CPU kernels, whose sum is the model, bound to its current
        parameters in numpy ``dtype`` (float32 or float64); ``None`` for a model without
        them (it then runs on the torch route). Called when an evaluator is built, not per
        call."""
        return None

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

    def energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """Site energies (n_atoms,) eV and ``g = ∂E/∂r_ij`` (n_edges, 3) eV/Å on the torch
        route (any device).

        The generic version takes one autograd pass; models override it with closed forms
        that build no autograd graph. Both tensors are new: the caller owns them (a
        :class:`~mlff.stack.Stack` sums its parts' gradients in place).
        """
        return energies_and_edge_grads(self.site_energies, graph)


class LinearSiteModel(SiteModel):
    """A site model linear in its parameters:
    ``E_i = site_basis[i] · θ + fixed_site_energies[i]``."""

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

    def design_rows(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The basis (n_atoms, P), force rows (n_atoms, 3, P) eV/Å and virial rows (6, P) eV
        (Voigt), unnormalised: forces F = rows·θ and virial W = rows·θ of the linear part,
        by the protocol's signs. What fitting assembles; models may compute them without the
        per-edge Jacobian (:meth:`site_basis_jacobian`), as ACE does on the CPU."""
        basis, jac = self.site_basis_jacobian(graph)  # (N, P), (n_edges, P, 3)
        forces = forces_from_edge_grads(jac, graph).permute(0, 2, 1)  # (N, 3, P)
        virial = voigt(virial_from_edge_grads(jac, graph)).T  # (6, P)
        return basis, forces, virial


class ReadoutModel(LinearSiteModel):
    """A linear model whose θ is one :class:`BlockReadout` held in ``self.readout``."""

    readout: BlockReadout

    def length_basis(self) -> int:
        return len(self.readout)

    def get_linear_parameters(self) -> torch.Tensor:
        return self.readout.get()

    def set_linear_parameters(self, theta) -> None:
        self.readout.set(theta, type(self).__name__)
        self.parameters_changed()


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
