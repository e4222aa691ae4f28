"""A sum of site models: one graph at the largest cutoff, each part on its own sub-graph; and
the fold of a stack's pair and one-body parts into an ACE part's compiled kernel.

The fold: a :class:`~mlff.models.pair.PairModel` gives each centre
``E_i = ½ Σ_j Σ_n θ_{ab,n} R_n(r_ij)``. Where it shares its radial basis with an
:class:`~mlff.models.ace.ACEModel` (elements, cutoff, r0, transform and envelope; its n_max
no larger), that is a sum of the ACE model's ν = 1 invariants
``B_i = A_{i,(z,n),00} = Σ_{j: z_j = z} R_n(r_ij) Y_00``, so adding ``½ θ_{(s_i, z), n} / Y_00``
to the ACE readout gives the pair's energies and forces from the ACE kernel, which computes
every R_n anyway. A :class:`~mlff.models.onebody.OneBody` part's E0 rides along as a constant
per centre species. So a distilled default stack (one-body, pair, ACE) is one kernel call.
The sum is exact up to rounding; the models themselves are not changed, and the torch route,
fitting and the committee still run the parts separately. A pair model's ZBL core has no ACE
counterpart: it stays a part of its own, which sees only the edges inside its reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mlff.graph import Graph
from mlff.models.ace import ACEModel
from mlff.models.harmonics import spherical_harmonics
from mlff.models.onebody import OneBody
from mlff.models.pair import PairModel
from mlff.protocol import CompiledPart, LinearSiteModel, SiteModel

__all__ = ["Stack", "add_part", "onebody_fold_energies", "pair_fold_coefficients"]


def add_part(edges, sub, energies, grads, total, total_grads):
    """``total`` (n_atoms,) and ``total_grads`` (n_edges, 3) of ``edges`` plus one part's
    ``energies`` and ``grads`` on ``sub`` (``edges`` restricted to the part's cutoff); numpy or
    torch alike. The running sums start as ``None``; a part's arrays are new, so the first
    part's are taken over and added into in place."""
    total = energies if total is None else total + energies
    if sub is edges:
        if total_grads is None:
            return total, grads
        total_grads += grads
    elif len(sub.centers):  # a shorter cutoff: its edges scattered back into the parent's
        if total_grads is None:
            total_grads = edges.vectors * 0  # zeros of the vectors' type, dtype and device
        total_grads[sub.parent_edges] += grads
    return total, total_grads


class StackParts(nn.ModuleList):
    """A stack's parts, fixed when the stack is made: calculators build their evaluator from
    them and see changes of the parts' parameters (their versions), not a changed list."""

    def __init__(self, models: Sequence[SiteModel]):
        super().__init__()
        for k, model in enumerate(models):
            self.add_module(str(k), model)

    def _refuse(self, *args, **kwargs):
        raise TypeError("a Stack's parts are fixed when it is made; build a new Stack instead")

    __setitem__ = __delitem__ = __iadd__ = append = extend = insert = pop = _refuse


class Stack(LinearSiteModel):
    """``E_i = Σ_parts E_i^part``. Linear parts contribute their θ, concatenated in order;
    non-linear parts (for example :class:`~mlff.models.OneBody`) enter as fixed energies.

    The stack's elements are those every part knows; its cutoff is the largest part cutoff.
    """

    def __init__(self, models: Sequence[SiteModel]):
        if isinstance(models, SiteModel):
            raise ValueError(
                f"Stack expects a list of models, got a single {type(models).__name__}; "
                "pass [model]"
            )
        models = list(models)
        if not models or not all(isinstance(m, SiteModel) for m in models):
            raise ValueError(
                "Stack needs a non-empty list of SiteModel instances, got "
                f"{[type(m).__name__ for m in models]}"
            )
        common = [e for e in models[0].elements if all(e in m.elements for m in models)]
        if not common:
            raise ValueError(
                "the parts share no element: "
                + "; ".join(f"{type(m).__name__}: {list(m.elements)}" for m in models)
            )
        super().__init__(common, max(m.cutoff for m in models))
        self.parts = StackParts(models)
        self._part_list = tuple(models)  # the same modules, read by version on every call

    @property
    def version(self) -> int:
        """The stack's own count plus its parts' (each only grows, so the sum moves whenever
        any part's does)."""
        version = self._parameter_version
        for part in self._part_list:
            version += part.version
        return version

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
        # Each part checks elements, dtype and device itself.
        total = None
        for part in self.parts:
            e = part.site_energies(graph.restrict(part.cutoff))
            total = e if total is None else total + e
        return total

    def energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        total, grads = None, None
        for part in self.parts:
            sub = graph.restrict(part.cutoff)
            total, grads = add_part(graph, sub, *part.energies_and_grads(sub), total, grads)
        return total, (grads if grads is not None else torch.zeros_like(graph.vectors))

    def compiled(self, dtype) -> tuple[CompiledPart, ...] | None:
        """The parts' compiled kernels in order, with pair and one-body parts folded into the
        first ACE part that carries them exactly (see the module docstring); ``None`` if any
        part that is not folded has no kernel."""
        aces = [p for p in self.parts if type(p) is ACEModel]
        additions: dict[int, torch.Tensor] = {}  # ACE index → θ additions
        constants: dict[int, torch.Tensor] = {}  # ACE index → E0 per species
        cores: list[CompiledPart] = []  # the ZBL cores of folded pairs: they run on their own
        folded = set()
        for k, part in enumerate(self.parts):
            for a, ace in enumerate(aces):
                if type(part) is PairModel:
                    extra = pair_fold_coefficients(ace, part)
                    if extra is not None:
                        additions[a] = additions[a] + extra if a in additions else extra
                        core = part.core_part()
                        cores.extend([] if core is None else [core])
                        break
                elif type(part) is OneBody:
                    extra = onebody_fold_energies(ace, part)
                    if extra is not None:
                        constants[a] = constants[a] + extra if a in constants else extra
                        break
            else:
                continue
            folded.add(k)
        calls: list[CompiledPart] = []
        for k, part in enumerate(self.parts):
            if k in folded:
                continue
            if type(part) is ACEModel:
                a = aces.index(part)
                theta = part.readout.weight.detach() + additions[a] if a in additions else None
                calls.extend(part.compiled(dtype, theta, constants.get(a)))
                continue
            own = part.compiled(dtype)
            if own is None:
                return None
            calls.extend(own)
        return tuple(calls + cores)

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

    def design_rows(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The linear parts' rows, side by side (each part on the edges within its cutoff: rows
        are per atom, so no edge mapping is needed)."""
        self._check(graph)
        parts = [m.design_rows(graph.restrict(m.cutoff)) for m in self.linear_parts]
        if not parts:
            zeros = graph.vectors.new_zeros
            return zeros(graph.n_atoms, 0), zeros(graph.n_atoms, 3, 0), zeros(6, 0)
        return tuple(torch.cat([p[t] for p in parts], dim=-1) for t in range(3))

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
            return (
                graph.vectors.new_zeros(graph.n_atoms, 0),
                graph.vectors.new_zeros(graph.n_edges, 0, 3),
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
                f"{[m.length_basis() for m in self.linear_parts]} concatenated, "
                f"got {tuple(theta.shape)}"
            )
        start = 0
        for m in self.linear_parts:
            stop = start + m.length_basis()
            m.set_linear_parameters(theta[start:stop])
            start = stop


def _same_radial_basis(pair: PairModel, ace: ACEModel) -> bool:
    """Whether the pair's R_n (n < pair.n_max) are the ACE model's, bit for bit: the kernels
    compute R_n from exactly these constants."""
    if pair.radial.n_max > ace.radial.n_max:
        return False
    mine, theirs = pair.radial.kernel_tables(np.float64), ace.radial.kernel_tables(np.float64)
    return all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))


def pair_fold_coefficients(ace: ACEModel, pair: PairModel) -> torch.Tensor | None:
    """(n_elements, ace.n_basis) additions to the ACE readout θ that give ``pair``'s site
    energies (without its ZBL core), in θ's dtype; ``None`` where the pair model cannot be
    folded into this ACE model exactly (different elements, cutoff or radial basis, or a
    missing ν = 1 function)."""
    if type(pair) is not PairModel or type(ace) is not ACEModel:
        return None
    if tuple(pair.elements) != tuple(ace.elements) or pair.cutoff != ace.cutoff:
        return None
    if not _same_radial_basis(pair, ace):
        return None
    linear = {}  # (element, n) → column of the ν = 1 invariant A_{(z,n),00}
    for k, fn in enumerate(ace.basis_spec):
        if fn.order == 1:
            z, n, _ = fn.factors[0]
            linear[(z, n - 1)] = k  # factors count n from 1, the radial basis from 0
    y00 = float(spherical_harmonics(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), 0)[0, 0])
    theta_pair = pair.readout.weight.detach().to("cpu", torch.float64)  # (n_pairs, n_max)
    index = pair.pair_index.cpu()
    out = torch.zeros(ace.readout.weight.shape, dtype=torch.float64)
    for s in range(len(ace.elements)):
        for z, element in enumerate(ace.elements):
            for n in range(pair.radial.n_max):
                k = linear.get((element, n))
                if k is None:
                    return None
                out[s, k] = 0.5 * theta_pair[index[s, z], n] / y00
    return out.to(ace.readout.weight)


def onebody_fold_energies(ace: ACEModel, onebody: OneBody) -> torch.Tensor | None:
    """(n_elements,) E0 (eV) of ``onebody`` per species of ``ace``, in θ's dtype and device;
    ``None`` where some element of ``ace`` has no E0 (the one-body part would refuse atoms
    the ACE part takes)."""
    if type(onebody) is not OneBody or type(ace) is not ACEModel:
        return None
    index = {e: k for k, e in enumerate(onebody.elements)}
    if any(e not in index for e in ace.elements):
        return None
    e0 = onebody.e0.detach().to("cpu", torch.float64)
    return torch.stack([e0[index[e]] for e in ace.elements]).to(ace.readout.weight)
