"""Pair models folded into an ACE model's ν = 1 terms, for the compiled CPU path of a stack.

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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlff.models.ace import ACEModel
from mlff.models.harmonics import spherical_harmonics
from mlff.models.pair import PairModel
from mlff.stamps import is_current, tensor_stamp

__all__ = ["pair_fold_coefficients", "FoldedPairs"]


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


class FoldedPairs:
    """Which pair parts of a stack fold into which ACE part, and those ACE parts' θ with the
    pairs folded in (each pair into the first ACE part that takes it exactly).

    The plan holds while :meth:`current` says so: the same parts in the same order, the same
    backends, readout, radial and repulsion modules, and no change of any θ or r0 that torch
    counts (in-place operations, ``load_state_dict``, ``set_linear_parameters``, dtype moves).
    Edits through ``.data`` bypass torch's version counter and are not seen, as by every cache
    of the kernel path.

    Attributes:
        folded: indices (into ``parts``) of the pair parts the ACE parts now carry.
        theta: ACE part index → (n_elements, n_basis) θ to evaluate it with.
        cores: the folded pair parts that have a ZBL core.
        calls: (part, cutoff, θ or None) of each part that still runs its own kernel, in order.
    """

    def __init__(self, parts: Sequence):
        self._parts = tuple(parts)
        # Parts that can fold: fixed while the parts and their backends are (current() checks).
        involved = self._involved = [i for i, p in enumerate(self._parts)
                                     if type(p) in (PairModel, ACEModel) and p.has_kernels()]
        # What the plan was made from, held directly (module lookups cost ~1 µs each, and MD
        # checks the plan every step): it holds while none of it changes.
        self._held = []  # (part's module dict, readout, radial, repulsion, θ's stamp, radial constants)
        for i in involved:
            modules = self._parts[i]._modules
            readout, radial = modules["readout"], modules["radial"]
            self._held.append((modules, readout, radial, modules.get("repulsion"),
                               tensor_stamp(readout._buffers["weight"]), radial.kernel_constants(np.float64)))
        self._backends = [p.backend for p in self._parts]
        additions: dict[int, torch.Tensor] = {}
        self.folded: set[int] = set()
        for i in (i for i in involved if type(self._parts[i]) is PairModel):
            for a in (a for a in involved if type(self._parts[a]) is ACEModel):
                extra = pair_fold_coefficients(self._parts[a], self._parts[i])
                if extra is not None:
                    additions[a] = extra if a not in additions else additions[a] + extra
                    self.folded.add(i)
                    break
        self.theta = {a: self._parts[a].readout.weight.detach() + extra for a, extra in additions.items()}
        self.cores = [self._parts[i] for i in sorted(self.folded) if self._parts[i].repulsion is not None]
        self.calls = tuple((p, p.cutoff, self.theta.get(i)) for i, p in enumerate(self._parts) if i not in self.folded)

    def core_radius(self) -> float:
        """Where the folded ZBL cores start to count (Å; 0 without cores): a call with a
        shorter edge needs the torch path."""
        return max((p.core_radius() for p in self.cores), default=0.0)

    def current(self, parts: Sequence) -> bool:
        """Whether the plan still describes ``parts`` (see the class docstring)."""
        # Modules compare by identity: tuple equality is a check of the same parts in order.
        if tuple(parts) != self._parts or [p.backend for p in self._parts] != self._backends:
            return False
        for modules, readout, radial, repulsion, stamp, constants in self._held:
            if (modules["readout"] is not readout or modules["radial"] is not radial
                    or modules.get("repulsion") is not repulsion or not is_current(stamp, readout._buffers["weight"])
                    or radial.kernel_constants(np.float64) is not constants):
                return False
        return True
