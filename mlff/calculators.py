"""ASE calculators around site models."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from mlff.evaluator import Evaluator, check_backend
from mlff.geometry import cell_volume
from mlff.graph import EdgeArrays, VerletGraphBuilder
from mlff.protocol import (
    LinearSiteModel,
    SiteModel,
    forces_and_stress,
    forces_from_edge_grads,
    stress_from_virial,
    virial_from_edge_grads,
)
from mlff.stack import Stack
from mlff.uncertainty import Committee

__all__ = ["SiteCalculator", "StackedCalculator"]


_NO_STAGE = contextlib.nullcontext()


def _no_timer(name: str) -> contextlib.AbstractContextManager:
    return _NO_STAGE  # one reusable context: nothing is made per stage


class SiteCalculator(Calculator):
    """ASE calculator for any :class:`~mlff.protocol.SiteModel`.

    Results: ``energy``/``free_energy`` (eV), ``energies`` (n_atoms,) eV, ``forces``
    (n_atoms, 3) eV/Å, ``stress`` (6,) eV/Å³ in Voigt order, for 3D-periodic cells only.
    Only what ``properties`` asks for is computed: an energy-only call runs no backward pass,
    and stress is computed only when asked.

    With a committee, also ``energy_std`` (eV), ``energies_std`` (n_atoms,) eV and
    ``forces_std`` (n_atoms,) eV/Å, the spreads over the members; with a
    :class:`~mlff.uncertainty.Committee` (which carries the training set's scale), also
    ``extrapolation_grade`` (n_atoms,), the per-atom spread over that scale (see
    :mod:`mlff.uncertainty`). These are computed only when asked for, and a call that asks
    only for them runs none of the energy path: ``get_property("extrapolation_grade")``
    after an MD step costs one site-basis evaluation on the step's neighbour list.
    ``energy_std``, ``energies_std`` and ``extrapolation_grade`` come together from the basis;
    ``forces_std`` needs the basis Jacobian too.

    Args:
        model: the site model; it is moved to ``device`` and ``dtype``.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        committee: a :class:`~mlff.uncertainty.Committee`, or (K, P) parameter samples
            (then without ``extrapolation_grade``, which needs the Committee's scale); linear
            models only.
        skin: Verlet skin, Å: the neighbour list is rebuilt only after an atom moved more than
            ``skin / 2`` (see :class:`~mlff.graph.VerletGraphBuilder`); 0 rebuilds every call.
        backend: ``"auto"`` (default): the models' compiled numba kernels on the CPU, torch on
            other devices; ``"torch"``: torch everywhere; ``"numba"``: the kernels, CPU only.
            See :mod:`mlff.evaluator` and docs/performance.md.
        compile: evaluate through ``torch.compile``; falls back to eager, with a log line,
            where compiling fails. Implies the torch backend.

    The calculator evaluates through an :class:`~mlff.evaluator.Evaluator`, rebuilt when the
    model's :attr:`~mlff.protocol.SiteModel.version` moves: parameters changed through the
    model's API (``set_linear_parameters``, ``load_state_dict``) reach the next call; an
    in-place edit of a tensor needs ``model.parameters_changed()`` first.
        num_threads: threads of this calculator's calls (the kernels', and torch's while a
            torch-route call runs). ``None``: all of torch's threads on the numba route; on the
            torch route on the CPU, one below 4096 atoms, where a second thread beside other
            work costs more than it gains on an idle machine (measured in
            docs/performance.md).
    """

    implemented_properties = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "energy_std",
        "energies_std",
        "forces_std",
        "extrapolation_grade",
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
        if not isinstance(model, SiteModel):
            raise TypeError(f"model must be a mlff SiteModel, got {type(model).__name__}")
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available; use device='cpu'"
            )
        check_backend(backend, self.device, compile)
        self.dtype = dtype
        self.backend = "torch" if compile else backend
        self.compile = bool(compile)
        if model.dtype != dtype or model.device != self.device:
            # A copy: the caller's model (possibly shared with other calculators) is left as is.
            model = copy.deepcopy(model).to(device=self.device, dtype=dtype)
        self.model = model.eval()
        self.graphs = VerletGraphBuilder(
            self.model.cutoff, skin=skin, dtype=dtype, device=self.device
        )
        self.num_threads = num_threads
        self.evaluator = Evaluator(self.model, self.backend, self.compile, num_threads)
        #: (K, P) committee members as a tensor, or None.
        self.committee: torch.Tensor | None = None
        #: The training set's largest per-atom spread (eV) that ``extrapolation_grade`` divides
        #: by; None without a :class:`~mlff.uncertainty.Committee`.
        self.committee_scale: float | None = None
        if committee is not None:
            if not isinstance(model, LinearSiteModel):
                raise ValueError("a committee needs a linear model (LinearSiteModel or Stack)")
            if isinstance(committee, Committee):
                committee.check_model(model)
                self.committee_scale = committee.scale
                committee = committee.thetas
            committee = torch.tensor(np.asarray(committee), dtype=dtype, device=self.device)
            if (
                committee.ndim != 2
                or committee.shape[1] != model.length_basis()
                or committee.shape[0] < 2
            ):
                raise ValueError(
                    f"committee must have shape (K >= 2, {model.length_basis()}), "
                    f"got {tuple(committee.shape)}"
                )
            self.committee = committee  # (K, P)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        # self.atoms = atoms.copy(), for ASE's cache
        super().calculate(atoms, properties, system_changes)
        if system_changes:
            self.results = {}
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError(
                f"stress needs a 3D-periodic cell, but pbc is {atoms.pbc.tolist()}; "
                "ask for energy and forces only"
            )
        if not _UNCERTAINTY.isdisjoint(properties):
            self._committee_results(atoms, properties)
            if _MAIN.isdisjoint(properties):
                return  # asked for spreads only: the energy path is not run
        need_grads = want_stress or "forces" in properties
        stage = self.stage_timer or _no_timer
        evaluator = self.evaluator
        if evaluator.version != self.model.version:
            evaluator = self.evaluator = Evaluator(
                self.model, self.backend, self.compile, self.num_threads
            )
        if evaluator.uses_kernels:
            self._kernel_results(atoms, want_stress, stage)
            return
        with stage("graph"):
            graph = self.graphs(atoms)
        with stage("forward"):  # E_i and ∂E/∂r_e together, or E_i alone for energy only
            if need_grads:
                site, grads = evaluator.torch_energies_and_grads(graph)
            else:
                site = evaluator.torch_energies(graph)
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

    def _kernel_results(self, atoms, want_stress: bool, stage) -> None:
        """The numba route: numpy from the neighbour list to the results, with no tensors or
        graphs in between. Forces, and on a 3D-periodic cell the stress, come with every call."""
        with stage("graph"):
            edges = self.graphs.edge_arrays(atoms)
        with stage("forward"):
            site, grads = self.evaluator.kernel_energies_and_grads(edges)
        with stage("convert"):
            self._store_kernel_results(atoms, edges, site, grads, want_stress)

    def _store_kernel_results(
        self, atoms, edges: EdgeArrays, site: np.ndarray, grads: np.ndarray, want_stress: bool
    ) -> None:
        e = float(site.sum(dtype=np.float64))
        results = self.results
        results["energy"] = e
        results["free_energy"] = e
        results["energies"] = site.astype(np.float64, copy=False)
        if want_stress or atoms.pbc.all():  # the stress is kept with the forces, as on torch
            volume = cell_volume(atoms.cell.array.tolist())
            forces, results["stress"] = forces_and_stress(grads, edges, volume)
        else:
            forces = forces_from_edge_grads(grads, edges)
        results["forces"] = forces.astype(np.float64, copy=False)

    def _committee_results(self, atoms, properties) -> None:
        """The committee's spreads: ``energy_std`` (eV), ``energies_std`` (n_atoms,) eV and,
        with a scale, ``extrapolation_grade`` (n_atoms,) from one basis evaluation and K dot
        products per atom; ``forces_std`` (n_atoms,) eV/Å = sqrt(Σ_xyz Var_K F_a) only when
        asked, from the basis Jacobian."""
        if self.committee is None:
            raise PropertyNotImplementedError(
                f"{'/'.join(p for p in properties if p in _UNCERTAINTY)} need a committee: "
                "build the calculator with FitResult.calculator(committee_size=K), "
                "SiteCalculator(model, committee=Committee.from_fit(result, train)), or "
                "DistilledCalculator(..., uncertainty=True) on a checkpoint saved with one"
            )
        if "extrapolation_grade" in properties and self.committee_scale is None:
            raise PropertyNotImplementedError(
                "extrapolation_grade needs the training set's scale: pass a "
                "mlff.uncertainty.Committee (Committee.from_fit(result, train) or "
                "Committee.from_thetas(model, thetas, train)) instead of a bare (K, P) array"
            )
        graph = self.graphs(atoms)  # the step's own neighbour list, when the step made one
        results = self.results
        with self.evaluator.torch_threads(graph.n_atoms), torch.no_grad():
            if "forces_std" in properties:
                basis, jac = self.model.site_basis_jacobian(graph)  # (N, P), (n_edges, P, 3)
                rows = forces_from_edge_grads(jac, graph)  # (N, P, 3)
                forces = torch.einsum("npx,kp->knx", rows, self.committee)  # (K, N, 3)
                std = forces.var(0, unbiased=False).sum(-1).sqrt()  # (N,)
                results["forces_std"] = std.cpu().numpy().astype(np.float64, copy=False)
            else:
                basis = self.model.site_basis(graph)  # (N, P)
            members = basis @ self.committee.T  # (N, K) site energies b_i·θ_k
            site = members.std(dim=1, unbiased=False)  # (N,)
            energies = members.sum(0)  # (K,)
        results["energy_std"] = float(energies.std(unbiased=False))
        results["energies_std"] = site.cpu().numpy().astype(np.float64, copy=False)
        if self.committee_scale is not None:
            results["extrapolation_grade"] = results["energies_std"] / self.committee_scale


#: Results of the energy path, and of the committee.
_MAIN = frozenset(("energy", "free_energy", "energies", "forces", "stress"))
_UNCERTAINTY = frozenset(("energy_std", "energies_std", "forces_std", "extrapolation_grade"))


class StackedCalculator(SiteCalculator):
    """ASE calculator for a sum of models, e.g. ``[OneBody, PairModel, ACEModel]``.

    One graph is built per call at the largest cutoff; each part reads the edges within its
    own cutoff, and one backward pass gives forces and stress of the whole sum.
    """

    def __init__(self, models: Sequence[SiteModel] | Stack, **kwargs):
        if isinstance(models, SiteModel) and not isinstance(models, Stack):
            raise ValueError(
                "StackedCalculator expects a list of models, got a single "
                f"{type(models).__name__}; pass [model] or use SiteCalculator(model)"
            )
        stack = models if isinstance(models, Stack) else Stack(models)
        super().__init__(stack, **kwargs)

    @property
    def models(self):
        return list(self.model.parts)
