"""One-body reference energies E0 per element."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mlff.graph import EdgeArrays, Graph
from mlff.protocol import CompiledPart, SiteModel

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

    def energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        return self.site_energies(graph), torch.zeros_like(graph.vectors)

    def compiled(self, dtype) -> tuple[CompiledPart]:
        """A table lookup: no kernel needed, but it runs on the CPU route with the others."""
        e0 = self.e0.detach().cpu().numpy().astype(dtype)

        def run(edges: EdgeArrays, species: np.ndarray, n_threads: int):
            return e0[species], np.zeros_like(edges.vectors)

        return (CompiledPart(run, self.cutoff, self.elements, type(self).__name__, "onebody", e0),)

    def reference_energies(self) -> dict[str, float]:
        return {e: float(v) for e, v in zip(self.elements, self.e0, strict=True)}

    def extra_repr(self) -> str:
        return ", ".join(f"{e}={v:.6g} eV" for e, v in self.reference_energies().items())
