"""A sum of site models: one graph at the largest cutoff, each part on its own sub-graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mlff.graph import EdgeArrays, Graph
from mlff.models.folding import StackKernelPlan
from mlff.protocol import LinearSiteModel, SiteModel

__all__ = ["Stack"]


class Stack(LinearSiteModel):
    """``E_i = Σ_parts E_i^part``. Linear parts contribute their θ, concatenated in order;
    non-linear parts (for example :class:`~mlff.models.OneBody`) enter as fixed energies.

    The stack's elements are those every part knows; its cutoff is the largest part cutoff.
    """

    def __init__(self, models: Sequence[SiteModel]):
        if isinstance(models, SiteModel):
            raise ValueError(
                f"Stack expects a list of models, got a single {type(models).__name__}; pass [model]"
            )
        models = list(models)
        if not models or not all(isinstance(m, SiteModel) for m in models):
            raise ValueError(
                f"Stack needs a non-empty list of SiteModel instances, got {[type(m).__name__ for m in models]}"
            )
        common = [e for e in models[0].elements if all(e in m.elements for m in models)]
        if not common:
            raise ValueError(
                "the parts share no element: "
                + "; ".join(f"{type(m).__name__}: {list(m.elements)}" for m in models)
            )
        super().__init__(common, max(m.cutoff for m in models))
        self.parts = nn.ModuleList(models)

    def check_parameters(self, prefix: str = "") -> None:
        """Each part's :meth:`~mlff.protocol.SiteModel.check_parameters`, named by its key."""
        for k, part in enumerate(self.parts):
            part.check_parameters(f"{prefix}parts.{k}.")

    @property
    def linear_parts(self) -> list[LinearSiteModel]:
        return [m for m in self.parts if isinstance(m, LinearSiteModel)]

    def _check(self, graph: Graph) -> None:
        for part in self.parts:
            part.species(graph)

    def site_energies(self, graph: Graph) -> torch.Tensor:
        # Each part checks elements, dtype and device itself: no second pass on the MD hot path.
        total = None
        for part in self.parts:
            e = part.site_energies(graph.restrict(part.cutoff))
            total = e if total is None else total + e
        return total

    def site_energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        total, grads = None, None
        for part in self.parts:
            sub = graph.restrict(part.cutoff)
            e, g = part.site_energies_and_grads(sub)
            total = e if total is None else total + e
            if sub is graph:
                # The parts return new tensors (see SiteModel.site_energies_and_grads), so
                # the first one can take the others in place.
                grads = g if grads is None else grads.add_(g)
            elif sub.n_edges:  # a shorter cutoff: its edges scattered back into the graph's
                grads = torch.zeros_like(graph.vectors) if grads is None else grads
                grads.index_add_(0, sub.parent_edges, g)
        return total, (grads if grads is not None else torch.zeros_like(graph.vectors))

    def has_kernels(self) -> bool:
        return all(part.has_kernels() for part in self._modules["parts"])  # MD asks every step

    def kernel_energies_and_grads(self, edges: EdgeArrays) -> tuple[np.ndarray, np.ndarray] | None:
        """As :meth:`SiteModel.kernel_energies_and_grads`, the parts summed; pair and one-body
        parts that an ACE part can carry ride in its kernel (:mod:`mlff.models.folding`)."""
        parts = self._modules["parts"]  # not an nn.Module lookup (~1 µs): MD calls this every step
        plan = self.__dict__.get("_kernel_plan")
        if plan is None or not plan.current(parts):
            plan = self.__dict__["_kernel_plan"] = StackKernelPlan(parts)
        return plan.energies_and_grads(edges)

    def site_basis(self, graph: Graph) -> torch.Tensor:
        self._check(graph)
        cols = [m.site_basis(graph.restrict(m.cutoff)) for m in self.linear_parts]
        if not cols:
            return graph.vectors.new_zeros(graph.n_atoms, 0)
        return torch.cat(cols, dim=1)

    def fixed_site_energies(self, graph: Graph) -> torch.Tensor:
        self._check(graph)
        total = super().fixed_site_energies(graph)
        for part in self.parts:
            sub = graph.restrict(part.cutoff)
            if isinstance(part, LinearSiteModel):
                total = total + part.fixed_site_energies(sub)
            else:
                total = total + part.site_energies(sub)
        return total

    def site_basis_jacobian(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(graph)
        bases, jacs = [], []
        for part in self.linear_parts:
            sub = graph.restrict(part.cutoff)
            basis, jac = part.site_basis_jacobian(sub)  # (N, P_m), (n_sub_edges, P_m, 3)
            if sub is not graph:
                full = jac.new_zeros(graph.n_edges, jac.shape[1], 3)
                full[sub.parent_edges] = jac
                jac = full
            bases.append(basis)
            jacs.append(jac)
        if not bases:
            return graph.vectors.new_zeros(graph.n_atoms, 0), graph.vectors.new_zeros(
                graph.n_edges, 0, 3
            )
        return torch.cat(bases, dim=1), torch.cat(jacs, dim=1)

    def basis_degrees(self) -> torch.Tensor:
        parts = [m.basis_degrees() for m in self.linear_parts]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def length_basis(self) -> int:
        return sum(m.length_basis() for m in self.linear_parts)

    def get_linear_parameters(self) -> torch.Tensor:
        parts = [m.get_linear_parameters() for m in self.linear_parts]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def set_linear_parameters(self, theta) -> None:
        theta = torch.as_tensor(theta, dtype=torch.float64)
        if theta.shape != (self.length_basis(),):
            raise ValueError(
                f"Stack expects θ of shape ({self.length_basis()},) = "
                f"{[m.length_basis() for m in self.linear_parts]} concatenated, got {tuple(theta.shape)}"
            )
        start = 0
        for m in self.linear_parts:
            stop = start + m.length_basis()
            m.set_linear_parameters(theta[start:stop])
            start = stop
