"""One-body reference energies E0 per element."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mlff.graph import EdgeArrays, Graph
from mlff.protocol import SiteModel

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
        # Constant while the atoms' numbers are (the cache lives that long) and e0 is: the
        # entry holds the tensor it was made from, and its version. A copy goes out, since
        # callers may add into what they get.
        e0, key = self.e0, ("e0", id(self))
        version = None if e0.is_inference() else e0._version  # inference tensors keep no version
        cached = edges.cache.get(key)
        if cached is None or cached[0] is not e0 or cached[1] != version or version is None:
            cached = (e0, version, e0.cpu().numpy()[self.kernel_species(edges)].astype(edges.vectors.dtype))
            edges.cache[key] = cached
        return cached[2].copy(), np.zeros_like(edges.vectors)

    def reference_energies(self) -> dict[str, float]:
        return {e: float(v) for e, v in zip(self.elements, self.e0)}

    def extra_repr(self) -> str:
        return ", ".join(f"{e}={v:.6g} eV" for e, v in self.reference_energies().items())
