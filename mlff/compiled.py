"""Optional ``torch.compile`` of a model's closed-form energies and edge gradients."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from mlff.graph import Graph
from mlff.protocol import SiteModel

__all__ = ["GradientEvaluator"]

log = logging.getLogger("mlff")


class GradientEvaluator:
    """Calls ``model.site_energies_and_grads(graph)``, compiled with ``torch.compile`` when
    ``compile=True``.

    The compiled path is built on the first call (tens of seconds to minutes on CPU) with
    dynamic shapes, so changing edge counts along MD do not recompile. If compiling or the
    compiled call fails (no C++ compiler, an unsupported op), it falls back to eager. Either
    way one log line on the ``mlff`` logger says which path runs; :attr:`path` says it too.
    """

    def __init__(self, model: SiteModel, compile: bool = False):
        self.model = model
        self.compile = bool(compile)
        self.path = "eager"
        self._compiled: Callable | None = None
        if self.compile:
            self._compiled = torch.compile(self._call_model, dynamic=True)
            self.path = "compile-pending"
        elif model.device.type == "cpu" and model.backend != "torch":
            self.path = "numba kernels"
            log.info("mlff: compiled numba kernels on the CPU (backend=%r)", model.backend)
        else:
            log.info("mlff: eager torch path (compile=False, backend=%r)", model.backend)

    def _call_model(
        self, positions, numbers, edge_index, shifts, vectors, cell, pbc, cutoff: float
    ):
        graph = Graph(positions, numbers, edge_index, shifts, vectors, cell, pbc, cutoff)
        return self.model.site_energies_and_grads(graph)

    def __call__(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        if self._compiled is not None and graph.parent_edges is None:
            args = (
                graph.positions,
                graph.numbers,
                graph.edge_index,
                graph.shifts,
                graph.vectors,
                graph.cell,
                graph.pbc,
                graph.cutoff,
            )
            try:
                out = self._compiled(*args)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
                log.warning(
                    "mlff: torch.compile failed (%s: %s); falling back to the eager path",
                    type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "",
                )
                self._compiled, self.path = None, "eager (compile failed)"
            else:
                if self.path != "compiled":
                    log.warning("mlff: running the torch.compile'd path")
                    self.path = "compiled"
                return out
        return self.model.site_energies_and_grads(graph)
