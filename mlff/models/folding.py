"""Pair and one-body parts folded into an ACE part's kernel, for the compiled CPU path of a stack.

A :class:`~mlff.models.pair.PairModel` gives each centre ``E_i = ½ Σ_j Σ_n θ_{ab,n} R_n(r_ij)``.
Where it shares its radial basis with an :class:`~mlff.models.ace.ACEModel` (elements, cutoff,
r0, transform and envelope; its n_max no larger), that is a sum of the ACE model's ν = 1
invariants ``B_i = A_{i,(z,n),00} = Σ_{j: z_j = z} R_n(r_ij) Y_00``, so adding
``½ θ_{(s_i, z), n} / Y_00`` to the ACE readout gives the pair's energies and forces from the
ACE kernel, which computes every R_n anyway. At 64 Si atoms that removes the pair kernel,
70 of the 620 µs a call costs. The sum is exact up to rounding; the models themselves are
not changed, and every other path (torch, fitting, the committee) still runs the parts
separately. A pair model's ZBL core has no ACE counterpart: a call with an edge inside it
takes the torch path, as an unfolded pair model's would.

A :class:`~mlff.models.onebody.OneBody` part's ``E0`` of the centre's element rides along too:
the kernel adds it to each site energy, so a distilled default stack (one-body, pair, ACE) is
one kernel call. :class:`StackKernelPlan`
decides the folds, holds the kernel's tables for them, and checks per call that they hold.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch

from mlff.graph import EdgeArrays
from mlff.models.ace import ACEModel
from mlff.models.harmonics import spherical_harmonics
from mlff.models.onebody import OneBody
from mlff.models.pair import PairModel
from mlff.stamps import TensorStamps

__all__ = ["pair_fold_coefficients", "onebody_fold_energies", "StackKernelPlan"]

_backend = operator.attrgetter("backend")


def _same_radial_basis(pair: PairModel, ace: ACEModel) -> bool:
    """Whether the pair's R_n (n < pair.n_max) are the ACE model's, bit for bit: the kernels
    compute R_n from exactly these constants."""
    if pair.radial.n_max > ace.radial.n_max:
        return False
    mine, theirs = pair.radial.kernel_constants(np.float64), ace.radial.kernel_constants(np.float64)
    return len(mine) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(mine, theirs))


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


class StackKernelPlan:
    """How a stack's parts run on the compiled CPU path: which pair and one-body parts ride in
    which ACE part's kernel (each into the first ACE part that takes it exactly), and the
    kernel tables of those ACE parts with the folds applied.

    The plan holds while :meth:`current` says so: the same parts in the same order, the same
    backends, readout, radial and repulsion modules, and no change of any θ, r0, E0 or ZBL
    r_outer that torch counts (in-place operations, ``load_state_dict``,
    ``set_linear_parameters``, dtype moves). Edits through ``.data`` bypass torch's version
    counter and are not seen, as by every cache of the kernel path.

    Attributes:
        folded: indices (into ``parts``) of the pair and one-body parts the ACE parts carry.
        theta: ACE part index → (n_elements, n_basis) θ to evaluate it with.
        constant: ACE part index → (n_elements,) E0 per species it adds (eV).
        cores: the folded pair parts that have a ZBL core.
        core_radius: where their cores start to count (Å; 0 without cores): a call with a
            shorter edge takes the torch path.
        calls: (part, cutoff, folded ACE index or None) of each part that runs a kernel, in order.
    """

    def __init__(self, parts: Sequence):
        self._parts = tuple(parts)
        with_kernels = [i for i, p in enumerate(self._parts) if p.has_kernels()]
        aces = [i for i in with_kernels if type(self._parts[i]) is ACEModel]
        involved = [i for i in with_kernels if type(self._parts[i]) in (PairModel, ACEModel)]
        additions: dict[int, torch.Tensor] = {}
        constants: dict[int, torch.Tensor] = {}
        self.folded: set[int] = set()
        for i in with_kernels:
            part = self._parts[i]
            for a in aces:
                if type(part) is PairModel:
                    extra = pair_fold_coefficients(self._parts[a], part)
                    if extra is not None:
                        additions[a] = extra if a not in additions else additions[a] + extra
                        break
                elif type(part) is OneBody:
                    extra = onebody_fold_energies(self._parts[a], part)
                    if extra is not None:
                        constants[a] = extra if a not in constants else constants[a] + extra
                        break
            else:
                continue
            self.folded.add(i)
        self.theta = {
            a: self._parts[a].readout.weight.detach() + additions.get(a, 0.0)
            for a in set(additions) | set(constants)
        }
        self.constant = constants
        self.cores = [
            self._parts[i]
            for i in sorted(self.folded)
            if getattr(self._parts[i], "repulsion", None)
        ]
        self.calls = tuple(
            (p, p.cutoff, i if i in self.theta else None)
            for i, p in enumerate(self._parts)
            if i not in self.folded
        )
        self._tables: dict = {}  # (ACE part index, dtype) → its kernel's tables with the folds
        # What the plan was made from, for current(): one C-level pass over each list (MD
        # checks the plan every step). Modules are compared by identity.
        self._backends = tuple(p.backend for p in self._parts)
        places = [
            (self._parts[i]._modules, name)
            for i in involved
            for name in ("readout", "radial", "repulsion")
        ]
        tensors = [(self._parts[i]._modules["readout"]._buffers, "weight") for i in involved]
        tensors += [
            (self._parts[i]._buffers, "e0") for i in self.folded if type(self._parts[i]) is OneBody
        ]
        tensors += [(p._modules["repulsion"]._buffers, "r_outer") for p in self.cores]
        settings = []  # what the radial constants of the folds and tables are made from
        for i in involved:
            modules, buffers, getters = self._parts[i]._modules["radial"].kernel_inputs()
            places += modules
            tensors += buffers
            settings += getters
        self._module_dicts, self._module_names = (
            tuple(d for d, _ in places),
            tuple(name for _, name in places),
        )
        self._modules = tuple(map(dict.get, self._module_dicts, self._module_names))
        self._stamps = TensorStamps(tensors)
        self._getters, self._objects = tuple(g for g, _ in settings), tuple(o for _, o in settings)
        self._settings = tuple(map(operator.call, self._getters, self._objects))
        self.core_radius = max(
            (p.core_radius() for p in self.cores), default=0.0
        )  # Å; r_outer is stamped

    def current(self, parts: Sequence) -> bool:
        """Whether the plan still describes ``parts`` (see the class docstring)."""
        return (
            len(parts) == len(self._parts)
            and all(map(operator.is_, parts, self._parts))
            and tuple(map(_backend, self._parts)) == self._backends
            and all(
                map(
                    operator.is_,
                    map(dict.get, self._module_dicts, self._module_names),
                    self._modules,
                )
            )
            and self._stamps.current()
            and tuple(map(operator.call, self._getters, self._objects)) == self._settings
        )

    def energies_and_grads(self, edges: EdgeArrays) -> tuple[np.ndarray, np.ndarray] | None:
        """The stack's E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) on the kernel path, or ``None``
        where this call needs the torch path (a part's own refusal, or an edge inside a folded
        ZBL core). Call only while :meth:`current` holds."""
        if self.cores and edges.shortest < self.core_radius:
            return None  # a hard collision: the ZBL core runs in torch
        total, grads = None, None
        for part, cutoff, folds in self.calls:
            sub = edges.restrict(cutoff)
            if folds is None:
                out = part.kernel_energies_and_grads(sub)
            else:  # the tables hold while the plan does: θ and E0 are the plan's own
                dtype = sub.vectors.dtype
                tables = self._tables.get((folds, dtype))
                if tables is None:
                    tables = self._tables[(folds, dtype)] = part.kernel_tables(
                        dtype, self.theta[folds], self.constant.get(folds)
                    )
                out = part.kernel_energies_and_grads(sub, tables=tables)
            if out is None:  # this call needs a part's torch path
                return None
            e, g = out
            total = e if total is None else total + e
            if sub is edges:
                grads = (
                    g if grads is None else np.add(grads, g, out=grads)
                )  # the parts' arrays are new
            elif len(sub.centers):  # a shorter cutoff: its edges scattered back into the parent's
                grads = np.zeros_like(edges.vectors) if grads is None else grads
                grads[sub.parent_edges] += g
        return total, (grads if grads is not None else np.zeros_like(edges.vectors))
