"""How a calculator evaluates its model, chosen once: the backend, the folded parts and their
kernel tables.

A calculator builds an :class:`Evaluator` when it is made and again only when its model's
:attr:`~mlff.protocol.SiteModel.version` moves (``set_linear_parameters``,
``load_state_dict``, dtype and device moves, ``parameters_changed()``). Between those, a call
checks one integer and runs; no per-call cache or stamp exists anywhere on the route.

Two routes, one per backend:

* **numba** (the default on the CPU): the model's compiled kernels
  (:meth:`~mlff.protocol.SiteModel.compiled`), each part on the edges within its cutoff,
  summed by :func:`~mlff.stack.add_part`; numpy from the neighbour list to the results.
* **torch** (other devices, ``backend="torch"``, ``compile=True``, and models without
  kernels): :meth:`~mlff.protocol.SiteModel.energies_and_grads` on a
  :class:`~mlff.graph.Graph`, optionally through ``torch.compile``.

Both routes give the same results to rounding; tests compare them on every test structure.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from mlff.graph import EdgeArrays, Graph
from mlff.protocol import CompiledPart, SiteModel
from mlff.stack import add_part

__all__ = ["BACKENDS", "Evaluator", "check_backend"]

log = logging.getLogger("mlff")

#: ``"auto"``: the compiled CPU kernels where every part has one and the device is the CPU,
#: torch otherwise; ``"torch"``: always torch (``torch.compile`` needs it); ``"numba"``: the
#: kernels, an error on another device or for a model without them.
BACKENDS = ("auto", "torch", "numba")


#: From this many atoms the torch route on the CPU uses all of torch's threads by default;
#: below, one: beside other work a second torch thread costs more than it gains on an idle
#: machine, because torch's OpenMP workers spin while they wait for the busy core. The numba
#: kernels use all threads at every size. Chosen from benchmark/threads.py; the table is in
#: docs/performance.md.
TORCH_PARALLEL_ATOMS = 4096


@contextlib.contextmanager
def _torch_threads(n_threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n_threads`` inside, restored after."""
    before = torch.get_num_threads()
    if n_threads == before:
        yield
        return
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_backend(backend: str, device: torch.device, compile: bool) -> None:
    """Refuse a backend name, or a combination with the device or ``compile``, that cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if compile and backend == "numba":
        raise ValueError(
            "compile=True runs torch.compile on the torch backend; use backend='auto' or 'torch'"
        )
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"backend 'numba' runs on the CPU only, got device {str(device)!r}")


class Evaluator:
    """The route a calculator takes for one version of its model.

    Threads: ``num_threads`` if given, else all of torch's threads on the numba route and,
    on the torch route on the CPU, one thread below :data:`TORCH_PARALLEL_ATOMS` atoms.

    Attributes:
        version: the model's :attr:`~mlff.protocol.SiteModel.version` it was built for.
        parts: the compiled kernels (numba route) in order, or ``None`` (torch route).
        path: what runs, for logs and tests: ``"numba kernels"``, ``"eager"``, or
            ``torch.compile``'s state (``"compile-pending"``, ``"compiled"``,
            ``"eager (compile failed)"``).
    """

    def __init__(
        self,
        model: SiteModel,
        backend: str = "auto",
        compile: bool = False,
        num_threads: int | None = None,
    ):
        check_backend(backend, model.device, compile)
        self.model = model
        self.num_threads = num_threads
        self.version = model.version
        self.parts: tuple[CompiledPart, ...] | None = None
        if backend != "torch" and not compile and model.device.type == "cpu":
            self.parts = model.compiled(np.dtype(str(model.dtype).removeprefix("torch.")))
            if self.parts is None and backend == "numba":
                raise ValueError(
                    f"backend 'numba' needs compiled kernels, but {type(model).__name__} (or a "
                    "part of it) has none; use backend='auto' or 'torch'"
                )
        self._compiled: Callable | None = None
        if self.parts is not None:
            self.path = "numba kernels"
        elif compile:
            self._compiled = torch.compile(self._call_model, dynamic=True)
            self.path = "compile-pending"
        else:
            self.path = "eager"
        log.info("mlff: %s (backend=%r, compile=%s)", self.path, backend, compile)

    @property
    def uses_kernels(self) -> bool:
        return self.parts is not None

    def kernel_energies_and_grads(self, edges: EdgeArrays) -> tuple[np.ndarray, np.ndarray]:
        """E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) from the compiled kernels (numpy)."""
        n_threads = self.num_threads or torch.get_num_threads()
        total = grads = None
        for part in self.parts:
            sub = edges.restrict(part.cutoff)
            out = part.run(sub, edges.species(part.elements, part.owner), n_threads)
            if out is not None:
                total, grads = add_part(edges, sub, *out, total, grads)
        if total is None:
            total = np.zeros(edges.n_atoms, dtype=edges.vectors.dtype)
        return total, (grads if grads is not None else np.zeros_like(edges.vectors))

    def _call_model(self, positions, numbers, edge_index, shifts, vectors, cell, pbc, cutoff):
        graph = Graph(positions, numbers, edge_index, shifts, vectors, cell, pbc, cutoff)
        return self.model.energies_and_grads(graph)

    def torch_threads(self, n_atoms: int) -> contextlib.AbstractContextManager:
        """The thread count of a torch-route call on ``n_atoms`` atoms, set while inside."""
        if self.num_threads is not None:
            return _torch_threads(self.num_threads)
        if self.model.device.type != "cpu" or n_atoms >= TORCH_PARALLEL_ATOMS:
            return contextlib.nullcontext()
        return _torch_threads(1)

    def torch_energies(self, graph: Graph) -> torch.Tensor:
        """E_i (n_atoms,) on the torch route, without gradients."""
        with self.torch_threads(graph.n_atoms), torch.inference_mode():
            return self.model.site_energies(graph)

    def torch_energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """E_i (n_atoms,) and ∂E/∂r_e (n_edges, 3) on the torch route; through
        ``torch.compile`` (dynamic shapes, built on the first call) when asked, falling back
        to eager with one log line where compiling fails."""
        with self.torch_threads(graph.n_atoms), torch.no_grad():
            return self._torch_energies_and_grads(graph)

    def _torch_energies_and_grads(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        if self._compiled is not None:
            args = (graph.positions, graph.numbers, graph.edge_index, graph.shifts)
            args += (graph.vectors, graph.cell, graph.pbc, graph.cutoff)
            try:
                out = self._compiled(*args)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
                first_line = str(err).splitlines()[0] if str(err) else ""
                log.warning(
                    "mlff: torch.compile failed (%s: %s); falling back to the eager path",
                    type(err).__name__,
                    first_line,
                )
                self._compiled, self.path = None, "eager (compile failed)"
            else:
                if self.path != "compiled":
                    log.warning("mlff: running the torch.compile'd path")
                    self.path = "compiled"
                return out
        return self.model.energies_and_grads(graph)
