"""Design rows of linear models: energies, forces and virials as linear functions of θ.

Row layout per configuration with n atoms (a stack's columns are its linear parts' columns
concatenated in order):

* 1 energy row: ``Σ_i B_i / n`` against ``(E − E_fixed) / n`` (energy per atom);
* 3n force rows, atom-major (atom 0 x, y, z, atom 1 x, …): ``−∂(Σ_i B_i)/∂x`` against
  ``F − F_fixed``;
* 6 virial rows for 3D-periodic configurations only, Voigt [xx, yy, zz, yz, xz, xy]:
  ``W = −Σ_e ∂B/∂r_e ⊗ r_e`` per atom, against ``(−σ·V − W_fixed) / n``.

Fixed parts (``OneBody`` E0, ZBL priors: everything that ``fixed_site_energies`` returns) are
evaluated with their own forces and virial and subtracted from the targets. Each row's weight is
the property weight times the configuration type's factor; the solvers minimise
Σ_rows w² (A θ − y)².
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
import torch
from ase import Atoms

from mlff.fitting.labels import Labels, read_labels
from mlff.geometry import check_atoms
from mlff.graph import build_graph
from mlff.protocol import (
    LinearSiteModel,
    energies_and_edge_grads,
    forces_from_edge_grads,
    virial_from_edge_grads,
    virial_from_stress,
    voigt,
)

__all__ = [
    "PROPERTIES",
    "LinearProblem",
    "NormalEquations",
    "Weights",
    "assemble",
    "energy_forces_virial_basis",
    "potential_energy_basis",
]

PROPERTIES = ("energy", "forces", "virial")


@dataclass(frozen=True)
class Weights:
    """Row weights: per property, times a factor per ``config_type``.

    ``per_config_type`` maps a config_type to a number (all its rows) or to a mapping
    property → factor, e.g. ``{"slab": 0.5, "vacancy": {"forces": 2.0}}``.
    """

    energy: float = 30.0
    forces: float = 1.0
    virial: float = 1.0
    per_config_type: Mapping[str, float | Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self):
        for prop in PROPERTIES:
            value = getattr(self, prop)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"weight for {prop} must be a finite number >= 0, got {value!r}")
        for ctype, factor in self.per_config_type.items():
            items = factor.items() if isinstance(factor, Mapping) else [("all", factor)]
            for prop, value in items:
                if prop not in (*PROPERTIES, "all"):
                    raise ValueError(
                        f"config_type {ctype!r}: unknown property {prop!r}; use {PROPERTIES}"
                    )
                if not (np.isfinite(value) and value >= 0):
                    raise ValueError(
                        f"config_type {ctype!r}: weight {value!r} must be a finite number >= 0"
                    )

    def weight(self, prop: str, config_type: str) -> float:
        factor = self.per_config_type.get(config_type, 1.0)
        if isinstance(factor, Mapping):
            factor = factor.get(prop, 1.0)
        return getattr(self, prop) * float(factor)


@dataclass
class LinearProblem:
    """Rows A (n_rows, P), targets y and weights w, with what each row is.

    ``config``: index of the configuration; ``prop``: 0 energy, 1 forces, 2 virial;
    ``component``: atom·3 + axis for forces, Voigt index for virials, 0 for energies.
    """

    A: np.ndarray
    y: np.ndarray
    w: np.ndarray
    config: np.ndarray
    prop: np.ndarray
    component: np.ndarray
    config_types: list[str]
    n_atoms: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def n_params(self) -> int:
        return int(self.A.shape[1])


@dataclass
class NormalEquations:
    """Accumulated AᵀW²A (P, P), AᵀW²y (P,), yᵀW²y and the row count: memory O(P²)."""

    AtA: np.ndarray
    Aty: np.ndarray
    yty: float
    n_rows: int

    @property
    def n_params(self) -> int:
        return int(self.AtA.shape[0])


def _check_model(model) -> None:
    if not isinstance(model, LinearSiteModel):
        raise TypeError(
            "assembly needs a LinearSiteModel (a linear model or a Stack), "
            f"got {type(model).__name__}"
        )


def _graph(atoms: Atoms, model: LinearSiteModel):
    return build_graph(atoms, model.cutoff, dtype=torch.float64, device=model.device)


def potential_energy_basis(atoms: Atoms, model: LinearSiteModel) -> np.ndarray:
    """Σ_i B_i (P,): the potential energy is this · θ plus the fixed parts."""
    _check_model(model)
    with torch.no_grad():
        return model.site_basis(_graph(atoms, model)).sum(0).cpu().numpy()


def energy_forces_virial_basis(
    atoms: Atoms, model: LinearSiteModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy row (P,), force rows (n_atoms, 3, P) and virial rows (6, P, Voigt), unnormalised.

    E = row·θ + E_fixed, F = rows·θ + F_fixed, W = rows·θ + W_fixed with W = −σ·V.
    """
    _check_model(model)
    graph = _graph(atoms, model)
    with torch.no_grad():
        basis, forces, virial = model.design_rows(graph)  # (N, P), (N, 3, P), (6, P)
    return basis.sum(0).numpy(), forces.numpy(), virial.numpy()


def _fixed_parts(model: LinearSiteModel, graph) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy (eV), forces (n_atoms, 3) eV/Å and virial (6,) eV in Voigt order of the fixed
    parts of ``model``, which the targets are reduced by."""
    # (N,), (n_edges, 3)
    site, grads = energies_and_edge_grads(model.fixed_site_energies, graph)
    forces = forces_from_edge_grads(grads, graph)
    virial = voigt(virial_from_edge_grads(grads, graph))  # (6,)
    return float(site.sum()), forces.numpy(), virial.numpy()


def _rows_for(atoms: Atoms, labels: Labels, model: LinearSiteModel, weights: Weights, index: int):
    """(A, y, w, prop, component) for one configuration."""
    n = len(atoms)
    graph = _graph(atoms, model)
    need_grads = labels.forces is not None or labels.stress is not None
    e_fixed, f_fixed, w_fixed = _fixed_parts(model, graph)
    with torch.no_grad():
        if need_grads:
            basis, force_rows, virial_rows = model.design_rows(graph)
        else:
            basis = model.site_basis(graph)
    blocks, targets, wts, props, comps = [], [], [], [], []
    if labels.energy is not None:
        blocks.append(basis.sum(0, keepdim=True).numpy() / n)
        targets.append(np.array([(labels.energy - e_fixed) / n]))
        wts.append(np.full(1, weights.weight("energy", labels.config_type)))
        props.append(np.zeros(1, dtype=np.int8))
        comps.append(np.zeros(1, dtype=np.int32))
    if labels.forces is not None:
        blocks.append(force_rows.reshape(3 * n, -1).numpy())  # (3N, P), atom-major
        targets.append((labels.forces - f_fixed).reshape(-1))
        wts.append(np.full(3 * n, weights.weight("forces", labels.config_type)))
        props.append(np.ones(3 * n, dtype=np.int8))
        comps.append(np.arange(3 * n, dtype=np.int32))
    if labels.stress is not None:
        blocks.append(virial_rows.numpy() / n)
        targets.append((virial_from_stress(labels.stress, graph.volume()) - w_fixed) / n)
        wts.append(np.full(6, weights.weight("virial", labels.config_type)))
        props.append(np.full(6, 2, dtype=np.int8))
        comps.append(np.arange(6, dtype=np.int32))
    if not blocks:
        p = model.length_basis()
        return (
            np.zeros((0, p)),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0, np.int8),
            np.zeros(0, np.int32),
        )
    A, y = np.concatenate(blocks), np.concatenate(targets)
    _check_finite_rows(A, y, np.concatenate(props))
    return (A, y, np.concatenate(wts), np.concatenate(props), np.concatenate(comps))


def _check_finite_rows(A: np.ndarray, y: np.ndarray, props: np.ndarray) -> None:
    """Refuse NaN/inf rows (a geometry the basis or the fixed parts cannot evaluate)."""
    for name, bad in (("design rows", ~np.isfinite(A).all(axis=1)), ("targets", ~np.isfinite(y))):
        if bad.any():
            kinds = sorted({PROPERTIES[int(k)] for k in props[bad]})
            raise ValueError(
                f"its {', '.join(kinds)} {name} contain NaN/inf ({int(bad.sum())} rows); "
                "every row must be finite: check the geometry "
                "(atoms too close for the fixed parts?)"
            )


def _names(error: Exception, index: int) -> bool:
    return str(error).startswith(f"configuration {index}")


def _named(index: int, error: Exception) -> Exception:
    """``error`` with "configuration <index>: " in front, of the same type where possible."""
    try:
        return type(error)(f"configuration {index}: {error}")
    except TypeError:  # an exception type that does not take one message
        return RuntimeError(f"configuration {index}: {type(error).__name__}: {error}")


def _check_elements(atoms: Atoms, model: LinearSiteModel, index: int) -> None:
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(model.elements))
    if unknown:
        raise ValueError(
            f"configuration {index} contains element(s) {', '.join(unknown)} "
            "not known to the model; "
            f"known elements: {', '.join(model.elements)}"
        )


def _work(args):
    """Rows (or partial normal equations) of a chunk of configurations, in a worker."""
    model, chunk, weights, normal = args
    torch.set_num_threads(1)
    return _accumulate(model, chunk, weights, normal)


def _accumulate(model, chunk, weights, normal):
    out = []
    p = model.length_basis()
    ata, aty, yty, n_rows = np.zeros((p, p)), np.zeros(p), 0.0, 0
    for index, atoms, labels in chunk:
        try:
            A, y, w, prop, comp = _rows_for(atoms, labels, model, weights, index)
        except Exception as error:
            if _names(error, index):
                raise
            raise _named(index, error) from error
        if normal:
            # In torch, on torch's threads: mixing numpy's BLAS threads with torch's OpenMP
            # pool right after torch work made this step ten times slower.
            Aw = torch.from_numpy(A * w[:, None])
            yw = torch.from_numpy(w * y)
            ata += (Aw.T @ Aw).numpy()
            aty += (Aw.T @ yw).numpy()
            yty += float(yw @ yw)
            n_rows += len(y)
        else:
            out.append((index, A, y, w, prop, comp))
    return (ata, aty, yty, n_rows) if normal else out


def assemble(
    dataset: Iterable[Atoms],
    model: LinearSiteModel,
    weights: Weights | Mapping | None = None,
    normal_equations: bool = False,
    n_workers: int = 1,
    progress: bool = False,
) -> LinearProblem | NormalEquations:
    """Assemble the weighted least-squares problem of ``model`` on labelled ``dataset``.

    Args:
        dataset: ``ase.Atoms`` carrying labels (see :func:`~mlff.fitting.labels.read_labels`).
        model: a linear model or a :class:`~mlff.Stack`.
        weights: :class:`Weights`, or a mapping of its fields.
        normal_equations: accumulate AᵀW²A and AᵀW²y instead of keeping rows (memory O(P²)).
        n_workers: processes over configurations (each runs torch with one thread);
            0 means one per CPU.
        progress: show a tqdm progress bar.
    """
    _check_model(model)
    if weights is None:
        weights = Weights()
    elif isinstance(weights, Mapping):
        weights = Weights(**weights)
    configs = []
    for index, atoms in enumerate(dataset):
        try:
            check_atoms(
                atoms
            )  # before any basis evaluation, and so that Z < 1 is not read as an element
            _check_elements(atoms, model, index)
            labels = read_labels(atoms, index)
        except Exception as error:
            if _names(error, index):
                raise
            raise _named(index, error) from error
        bare = atoms.copy()  # labels are read: workers need no (possibly unpicklable) calculator
        bare.calc = None
        configs.append((index, bare, labels))
    if not configs:
        raise ValueError("the dataset is empty; give at least one labelled configuration")
    _check_something_to_fit(configs, weights)
    if int(n_workers) < 0:
        raise ValueError(f"n_workers must be >= 0, got {n_workers}")
    n_workers = (os.cpu_count() or 1) if int(n_workers) == 0 else int(n_workers)
    if model.dtype != torch.float64:
        model = copy.deepcopy(model).to(dtype=torch.float64)  # assembly is always float64
    model = model.eval()
    chunk_size = max(1, min(32, len(configs) // max(1, 4 * n_workers)))
    chunks = [configs[i : i + chunk_size] for i in range(0, len(configs), chunk_size)]
    bar = _progress(len(configs), progress)
    results = []
    if n_workers == 1:
        for chunk in chunks:
            results.append(_accumulate(model, chunk, weights, normal_equations))
            bar.update(len(chunk))
    else:
        with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
            for chunk, result in zip(
                chunks,
                pool.map(_work, [(model, c, weights, normal_equations) for c in chunks]),
                strict=True,
            ):
                results.append(result)
                bar.update(len(chunk))
    bar.close()
    if normal_equations:
        ata = sum(r[0] for r in results)
        return NormalEquations(
            ata,
            sum(r[1] for r in results),
            float(sum(r[2] for r in results)),
            int(sum(r[3] for r in results)),
        )
    rows = [item for r in results for item in r]
    config = np.concatenate([np.full(len(r[2]), r[0], dtype=np.int64) for r in rows])
    return LinearProblem(
        A=np.concatenate([r[1] for r in rows]),
        y=np.concatenate([r[2] for r in rows]),
        w=np.concatenate([r[3] for r in rows]),
        config=config,
        prop=np.concatenate([r[4] for r in rows]),
        component=np.concatenate([r[5] for r in rows]),
        config_types=[labels.config_type for _, _, labels in configs],
        n_atoms=np.array([len(atoms) for _, atoms, _ in configs]),
    )


def _row_counts(configs, weights: Weights) -> dict[str, list[int]]:
    """Per property: [labelled rows, rows with a non-zero weight]."""
    counts = {prop: [0, 0] for prop in PROPERTIES}
    for _, atoms, labels in configs:
        present = {
            "energy": labels.energy is not None,
            "forces": labels.forces is not None,
            "virial": labels.stress is not None,
        }
        rows = {"energy": 1, "forces": 3 * len(atoms), "virial": 6}
        for prop in PROPERTIES:
            if present[prop]:
                counts[prop][0] += rows[prop]
                counts[prop][1] += rows[prop] if weights.weight(prop, labels.config_type) > 0 else 0
    return counts


def _check_something_to_fit(configs, weights: Weights) -> None:
    """Refuse, before any basis evaluation, data that would give no weighted row."""
    counts = _row_counts(configs, weights)
    if not any(labelled for labelled, _ in counts.values()):
        raise ValueError(
            f"nothing to fit: no configuration (of {len(configs)}) "
            "has an energy, forces or stress label "
            "(read from the calculator's results, or atoms.info['energy'], atoms.arrays['forces'], "
            "atoms.info['stress']; stress only on 3D-periodic cells)"
        )
    if not any(weighted for _, weighted in counts.values()):
        have = ", ".join(f"{labelled} {prop}" for prop, (labelled, _) in counts.items() if labelled)
        raise ValueError(
            f"nothing to fit: every labelled row ({have}) has weight zero under {weights}; "
            "give at least one labelled property a positive weight"
        )


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="assembling", unit="config", disable=not enabled)
