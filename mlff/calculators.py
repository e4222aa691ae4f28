"""ASE calculators around site models."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from mlff.compiled import GradientEvaluator
from mlff.geometry import cell_volume
from mlff.graph import VerletGraphBuilder, build_graph
from mlff.protocol import (
    BACKENDS,
    LinearSiteModel,
    SiteModel,
    forces_from_edge_arrays,
    forces_from_edge_grads,
    forces_virial_and_stress_from_edge_arrays,
    stress_from_virial,
    virial_from_edge_grads,
)
from mlff.stack import Stack

__all__ = ["SiteCalculator", "StackedCalculator"]


def _no_timer(name: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


class SiteCalculator(Calculator):
    """ASE calculator for any :class:`~mlff.protocol.SiteModel`.

    Results: ``energy``/``free_energy`` (eV), ``energies`` (n_atoms,) eV, ``forces``
    (n_atoms, 3) eV/Å, ``stress`` (6,) eV/Å³ in Voigt order, for 3D-periodic cells only.
    Only what ``properties`` asks for is computed: an energy-only call runs no backward pass,
    and stress is computed only when asked.

    Args:
        model: the site model; it is moved to ``device`` and ``dtype``.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        committee: (K, P) parameter samples for ``energy_std``/``forces_std`` (linear models).
        skin: Verlet skin, Å: the neighbour list is rebuilt only after an atom moved more than
            ``skin / 2`` (see :class:`~mlff.graph.VerletGraphBuilder`); 0 rebuilds every call.
        backend: ``"auto"`` (default): the models' compiled numba kernels on the CPU, torch on
            other devices; ``"torch"``: torch everywhere; ``"numba"``: the kernels, CPU only.
            See :data:`~mlff.protocol.BACKENDS` and docs/performance.md.
        compile: evaluate through ``torch.compile`` (see :class:`~mlff.compiled.GradientEvaluator`);
            falls back to eager, with a log line, where compiling fails. Implies the torch
            backend.
        num_threads: if given, sets torch's intra-op threads (process-wide) for MD; ``None``
            leaves torch's setting alone. See docs/performance.md for measured choices.
    """

    implemented_properties = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "energy_std",
        "forces_std",
    ]

    #: Optional profiling hook: ``stage_timer(name)`` returns a context manager entered around
    #: each stage of :meth:`calculate`: ``"graph"``, ``"forward"`` (energies and, when asked,
    #: their edge gradients in one pass), ``"convert"``.
    #: ``None`` (the default) costs nothing. Used by :mod:`mlff.md.profile`.
    stage_timer: Callable[[str], contextlib.AbstractContextManager] | None = None

    def __init__(
        self,
        model: SiteModel,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        committee=None,
        skin: float = 0.5,
        backend: str = "auto",
        compile: bool = False,
        num_threads: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_threads is not None:
            if not isinstance(num_threads, int) or num_threads < 1:
                raise ValueError(
                    f"num_threads must be a positive integer or None, got {num_threads!r}"
                )
            torch.set_num_threads(num_threads)
        if not isinstance(model, SiteModel):
            raise TypeError(f"model must be a mlff SiteModel, got {type(model).__name__}")
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        self.device = torch.device(device)
        self._on_cpu = self.device.type == "cpu"  # read every call: a torch attribute costs more
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available; use device='cpu'"
            )
        self.dtype = dtype
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if compile and backend == "numba":
            raise ValueError(
                "compile=True runs torch.compile on the torch backend; use backend='auto' or 'torch'"
            )
        if backend == "numba" and self.device.type != "cpu":
            raise ValueError(f"backend 'numba' runs on the CPU only, got device {device!r}")
        backend = "torch" if compile else backend
        self.backend = backend
        parts = [m for m in model.modules() if isinstance(m, SiteModel)]
        if (
            model.dtype != dtype
            or model.device != self.device
            or any(m.backend != backend for m in parts)
        ):
            # A copy: the caller's model (possibly shared with other calculators) is left as is.
            model = copy.deepcopy(model).to(device=self.device, dtype=dtype).set_backend(backend)
        self.model = model.eval()
        self.graphs = VerletGraphBuilder(
            self.model.cutoff, skin=skin, dtype=dtype, device=self.device
        )
        self.evaluator = GradientEvaluator(self.model, compile=compile)
        self.committee = None
        if committee is not None:
            if not isinstance(model, LinearSiteModel):
                raise ValueError("a committee needs a linear model (LinearSiteModel or Stack)")
            committee = torch.as_tensor(np.asarray(committee), dtype=dtype, device=self.device)
            if (
                committee.ndim != 2
                or committee.shape[1] != model.length_basis()
                or committee.shape[0] < 2
            ):
                raise ValueError(
                    f"committee must have shape (K >= 2, {model.length_basis()}), got {tuple(committee.shape)}"
                )
            self.committee = committee  # (K, P)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(
            atoms, properties, system_changes
        )  # self.atoms = atoms.copy(), for ASE's cache
        if system_changes:
            self.results = {}
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError(
                f"stress needs a 3D-periodic cell, but pbc is {atoms.pbc.tolist()}; "
                "ask for energy and forces only"
            )
        if "energy_std" in properties or "forces_std" in properties:
            self._committee_results(atoms)
        need_grads = want_stress or "forces" in properties
        stage = self.stage_timer or _no_timer
        if self._cpu_kernels and self._kernel_results(atoms, want_stress, stage):
            return
        with stage("graph"):
            graph = self.graphs(atoms)
        if need_grads:
            # Models give E_i and ∂E/∂r_e together (closed forms where they have them), so
            # there is no separate backward stage.
            with (
                torch.no_grad(),
                stage("forward"),
            ):  # not inference_mode: generic models need autograd
                site, grads = self.evaluator(graph)
                energy = site.sum()
        else:
            with torch.inference_mode(), stage("forward"):
                site = self.model.site_energies(graph)
                energy = site.sum()
        with stage("convert"):
            e = float(energy.detach())
            self.results["energy"] = e
            self.results["free_energy"] = e
            self.results["energies"] = site.detach().cpu().numpy().astype(np.float64, copy=False)
            if need_grads:
                grads = grads.detach()
                self.results["forces"] = (
                    forces_from_edge_grads(grads, graph)
                    .cpu()
                    .numpy()
                    .astype(np.float64, copy=False)
                )
                # The virial costs one small product once the edge gradients exist, so a
                # 3D-periodic forces call caches the stress too: NPT integrators ask for
                # forces and then stress, and must not pay for two evaluations.
                if want_stress or graph.is_3d_periodic:
                    virial = virial_from_edge_grads(grads, graph)
                    stress = stress_from_virial(virial, graph.volume())
                    self.results["stress"] = stress.cpu().numpy().astype(np.float64, copy=False)

    @property
    def _cpu_kernels(self) -> bool:
        """Whether calls take the numpy path of kernel models (see :meth:`_kernel_results`):
        torch.compile, the torch backend (also set later with ``calc.model.set_backend``),
        other devices and models without kernels go through graphs."""
        return self._on_cpu and self.backend != "torch" and self.model.has_kernels()

    def _kernel_results(self, atoms, want_stress: bool, stage) -> bool:
        """The CPU path of models with compiled kernels: numpy from the neighbour list to the
        results, with no tensors or graphs in between (at 64 atoms their Python costs as much
        as the kernels). Forces, and on a 3D-periodic cell the stress, come with every call.
        Returns False, having stored nothing, where this call needs the torch path."""
        if stage is not _no_timer:  # profiling: the same steps, each inside its stage
            with stage("graph"):
                edges = self.graphs.edge_arrays(atoms)
            with stage("forward"):
                out = self.model.kernel_energies_and_grads(edges)
            if out is not None:
                with stage("convert"):
                    self._store_kernel_results(atoms, edges, out, want_stress)
        else:  # an MD step: the context managers alone cost a few µs of a 64-atom step
            edges = self.graphs.edge_arrays(atoms)
            out = self.model.kernel_energies_and_grads(edges)
            if out is not None:
                self._store_kernel_results(atoms, edges, out, want_stress)
        return out is not None

    def _store_kernel_results(
        self, atoms, edges, out: tuple[np.ndarray, np.ndarray], want_stress: bool
    ) -> None:
        site, grads = out
        e = float(site.sum(dtype=np.float64))
        results = self.results
        results["energy"] = e
        results["free_energy"] = e
        results["energies"] = site if site.dtype == np.float64 else site.astype(np.float64)
        if (
            want_stress or atoms.pbc.all()
        ):  # the stress is cached with the forces, as on the torch path
            forces, _, stress = forces_virial_and_stress_from_edge_arrays(
                grads,
                edges.centers,
                edges.neighbors,
                edges.vectors,
                edges.n_atoms,
                cell_volume(atoms.cell.array.tolist()),
            )
            results["stress"] = stress if stress.dtype == np.float64 else stress.astype(np.float64)
        else:
            forces = forces_from_edge_arrays(grads, edges.centers, edges.neighbors, edges.n_atoms)
        results["forces"] = forces if forces.dtype == np.float64 else forces.astype(np.float64)

    def _committee_results(self, atoms) -> None:
        """energy_std (eV) and forces_std (n_atoms,) eV/Å from one basis evaluation and K dot
        products: forces_std[a] = sqrt(Σ_xyz Var_K F_a)."""
        if self.committee is None:
            raise PropertyNotImplementedError(
                "energy_std/forces_std need a committee: build the calculator with "
                "FitResult.calculator(committee_size=K) or SiteCalculator(model, committee=thetas)"
            )
        graph = build_graph(atoms, self.model.cutoff, dtype=self.dtype, device=self.device)
        basis, jac = self.model.site_basis_jacobian(graph)  # (N, P), (n_edges, P, 3)
        energies = basis.sum(0) @ self.committee.T  # (K,)
        rows = forces_from_edge_grads(jac, graph)  # (N, P, 3)
        forces = torch.einsum("npx,kp->knx", rows, self.committee)  # (K, N, 3)
        self.results["energy_std"] = float(energies.std(unbiased=False))
        self.results["forces_std"] = forces.var(0, unbiased=False).sum(-1).sqrt().cpu().numpy()


class StackedCalculator(SiteCalculator):
    """ASE calculator for a sum of models, e.g. ``[OneBody, PairModel, ACEModel]``.

    One graph is built per call at the largest cutoff; each part reads the edges within its
    own cutoff, and one backward pass gives forces and stress of the whole sum.
    """

    def __init__(self, models: Sequence[SiteModel] | Stack, **kwargs):
        if isinstance(models, SiteModel) and not isinstance(models, Stack):
            raise ValueError(
                f"StackedCalculator expects a list of models, got a single {type(models).__name__}; "
                "pass [model] or use SiteCalculator(model)"
            )
        stack = models if isinstance(models, Stack) else Stack(models)
        super().__init__(stack, **kwargs)

    @property
    def models(self):
        return list(self.model.parts)
