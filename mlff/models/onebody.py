"""One-body reference energies E0 per element."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mlff.graph import EdgeArrays, Graph
from mlff.protocol import SiteModel
from mlff.stamps import is_current, tensor_stamp

__all__ = ["OneBody"]


class OneBody(SiteModel):
    """``E_i = E0[element of i]`` (eV). Fixed: it carries no linear parameters.

    Args:
        e0: element symbol → reference energy in eV, e.g. ``{"Si": -0.5}``.
    """

    def __init__(self, e0: Mapping[str, float]):
        if not isinstance(e0, Mapping) or not e0:
            raise ValueError(f"OneBody needs a mapping element → E0 in eV, got {e0!r}")
        super().__init__(list(e0), cutoff=0.0)
        values = [float(e0[e]) for e in self.elements]
        self.register_buffer("e0", torch.tensor(values, dtype=torch.float64))

    def site_energies(self, graph: Graph) -> torch.Tensor:
        return self.e0[self.species(graph)]

    def site_energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        return self.site_energies(graph), torch.zeros_like(graph.vectors)

    def has_kernels(self) -> bool:
        return self.backend != "torch"  # a table lookup: no kernel needed

    def kernel_energies_and_grads(self, edges: EdgeArrays) -> tuple[np.ndarray, np.ndarray]:
        # Constant while the atoms' numbers are (the cache lives that long) and e0 is. A copy
        # goes out, since callers may add into what they get.
        key = ("e0", id(self))
        cached = edges.cache.get(key)
        if cached is None or not is_current(cached[0], self.e0):
            energies = self.e0.cpu().numpy()[self.kernel_species(edges)].astype(edges.vectors.dtype)
            cached = edges.cache[key] = (tensor_stamp(self.e0), energies)
        return cached[1].copy(), np.zeros_like(edges.vectors)

    def reference_energies(self) -> dict[str, float]:
        return {e: float(v) for e, v in zip(self.elements, self.e0)}

    def extra_repr(self) -> str:
        return ", ".join(f"{e}={v:.6g} eV" for e, v in self.reference_energies().items())
