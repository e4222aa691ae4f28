"""``mlff fit``: a student from the user's own labelled data, into the same run directory
that ``mlff distill`` makes (checkpoint with its BLR committee, report.json, report.md and
parity plots), so ``DistilledCalculator``, ``mlff info``, ``bench``, ``validate``, ``export``
and ``eval`` all take it.

Everything that can be wrong with the input (files, label keys, NaN labels, elements, E0,
settings) is refused before the run directory is touched.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlff.fitting.data import LabelKeys, isolated_atom_energies, read_dataset

__all__ = ["FitConfig", "fit_run"]


@dataclass
class FitConfig:
    """Settings of ``mlff fit``; every field can come from ``--config fit.toml`` under the same
    name (``mlff fit --print-config`` prints them all).

    ``size``: ``"auto"`` (the ACE basis of largest BLR evidence among the sizes
    :data:`~mlff.fitting.size.SIZES` within ``max_parameters``) or a size name (xs, s, m,
    l, xl; m is the distillation default); ``ace`` options are laid over the size's.
    ``e0``: ``"auto"`` (the data's ``IsolatedAtom`` energies where given, least squares on
    the energies otherwise), ``"estimate"`` (least squares), or a table element → eV.
    ``weights``: per property (energy per atom, force components, virial per atom);
    ``config_type_weights``: a factor per config_type, or a table of them by property.
    ``solver``: ``"blr"`` (Bayesian, with the committee) or ``"qr"`` (ridge regression with
    λ = ``ridge`` on the Jacobi-scaled normal equations; no committee).
    """

    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virial_key: str | None = None
    config_type_key: str = "config_type"
    cutoff: float = 5.0
    size: str = "auto"
    max_parameters: int = 5000
    ace: dict = field(default_factory=dict)
    pair: dict = field(default_factory=lambda: {"n_max": 8, "repulsion": True})
    e0: Any = "auto"
    weights: dict = field(default_factory=lambda: {"energy": 30.0, "forces": 1.0, "virial": 10.0})
    config_type_weights: dict = field(default_factory=dict)
    solver: str = "blr"
    ridge: float = 1e-6
    committee_size: int = 16
    n_workers: int = 1
    seed: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FitConfig:
        from mlff.settings import from_mapping

        return from_mapping(cls, data)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def keys(self) -> LabelKeys:
        return LabelKeys(
            self.energy_key, self.forces_key, self.stress_key, self.virial_key, self.config_type_key
        )

    def validate(self) -> None:
        """Refuse a bad value, naming it and what is accepted, before any data are read."""
        from mlff.distill.config import check_model_settings
        from mlff.fitting.assembly import Weights

        self.keys  # noqa: B018 - LabelKeys checks the names
        if not (isinstance(self.cutoff, int | float) and 0 < self.cutoff < 20):
            raise ValueError(f"cutoff = {self.cutoff!r}; accepted a number of Å in (0, 20)")
        check_model_settings(self.ace, self.pair, self.weights)
        Weights(**self.weights, per_config_type=self.config_type_weights)
        from mlff.fitting.size import SIZE_NAMES

        if self.size != "auto" and self.size not in SIZE_NAMES:
            raise ValueError(
                f"size = {self.size!r}; accepted 'auto' or one of {', '.join(SIZE_NAMES)}"
            )
        if self.size == "auto":
            chosen = sorted({"n_max", "max_degree"} & set(self.ace))
            if chosen:
                raise ValueError(
                    f"size = 'auto' chooses ace.n_max and ace.max_degree, but the settings give "
                    f"{', '.join('ace.' + k for k in chosen)}; name a size or remove them"
                )
            if self.solver != "blr":
                raise ValueError("size = 'auto' compares BLR evidences: it needs solver = 'blr'")
        if isinstance(self.max_parameters, bool) or not (
            isinstance(self.max_parameters, int) and self.max_parameters >= 1
        ):
            raise ValueError(f"max_parameters = {self.max_parameters!r}; accepted an integer >= 1")
        if self.solver not in ("blr", "qr"):
            raise ValueError(f"solver = {self.solver!r}; accepted 'blr' or 'qr'")
        if not (isinstance(self.ridge, int | float) and self.ridge >= 0):
            raise ValueError(f"ridge = {self.ridge!r}; accepted a number >= 0")
        for name, low in (("committee_size", 2), ("n_workers", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} = {value!r}; accepted an integer >= {low}")
        if isinstance(self.e0, Mapping):
            bad = {k: v for k, v in self.e0.items() if not isinstance(v, int | float)}
            if bad:
                raise ValueError(f"e0 {bad}: accepted a number of eV per element")
        elif self.e0 not in ("auto", "estimate"):
            raise ValueError(
                f"e0 = {self.e0!r}; accepted 'auto', 'estimate' or a table element = eV"
            )


def _elements_of(configs) -> list[str]:
    return sorted({s for atoms in configs for s in atoms.get_chemical_symbols()})


def _reference_energies(config: FitConfig, isolated: dict, train, elements) -> tuple[dict, str]:
    """E0 per element and where it came from; refuses E0 tables that miss an element of the
    data or name one the data lack."""
    from mlff.fitting.reference import estimate_e0

    if isinstance(config.e0, Mapping):
        e0 = {str(k): float(v) for k, v in config.e0.items()}
        source = "given"
    elif config.e0 == "auto" and isolated:
        e0, source = dict(isolated), "IsolatedAtom configurations"
        missing = [e for e in elements if e not in e0]
        if missing:
            estimated = estimate_e0(train, elements)
            e0.update({e: estimated[e] for e in missing})
            source += f" (estimated for {', '.join(missing)})"
    else:
        e0, source = estimate_e0(train, elements), "least squares on the energies"
    missing = [e for e in elements if e not in e0]
    extra = [e for e in e0 if e not in elements]
    if missing or extra:
        raise ValueError(
            "e0 must give exactly the data's elements "
            f"({', '.join(elements)}): missing {missing or 'none'}, not in the data "
            f"{extra or 'none'}"
        )
    return {e: e0[e] for e in elements}, source


def _counts(configs) -> dict[str, int]:
    return dict(sorted(Counter(a.info.get("config_type", "default") for a in configs).items()))


def fit_run(
    train: Sequence[str],
    out: str | Path,
    config: FitConfig | None = None,
    test: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Read, check, fit, and write the run directory ``out``; returns the report (a dict)."""
    from mlff.fitting.size import SIZES, SizeCandidate, size_curve_plot, size_options
    from mlff.models.default import default_stack

    config = config or FitConfig()
    config.validate()
    stages: dict[str, float] = {}
    clock = time.perf_counter()
    train_configs = read_dataset(train, config.keys)
    test_configs = read_dataset(test, config.keys) if test else None
    isolated, train_configs = isolated_atom_energies(train_configs)
    if test_configs is not None:
        test_configs = isolated_atom_energies(test_configs)[1]
    if not train_configs:
        raise ValueError("the training data hold only IsolatedAtom configurations")
    elements = _elements_of(train_configs)
    if test_configs is not None:
        unseen = sorted(set(_elements_of(test_configs)) - set(elements))
        if unseen:
            raise ValueError(
                f"the test data have {unseen}, which the training data lack ({elements})"
            )
    e0, e0_source = _reference_energies(config, isolated, train_configs, elements)
    sizes = [config.size] if config.size != "auto" else list(SIZES)
    candidates = {
        name: default_stack(
            elements, e0, config.cutoff, size_options(name, config.ace), config.pair
        )
        for name in sizes
    }
    fitting = {k: m for k, m in candidates.items() if m.length_basis() <= config.max_parameters}
    candidates = fitting or dict([next(iter(candidates.items()))])  # the smallest at least
    stages["read"] = time.perf_counter() - clock
    log(
        f"{len(train_configs)} training configurations ({sum(len(a) for a in train_configs)} "
        f"atoms), {len(test_configs or [])} test; elements {', '.join(elements)}; sizes "
        + ", ".join(f"{k} ({m.length_basis()} parameters)" for k, m in candidates.items())
        + f"; E0 from {e0_source}"
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.size == "auto":
        result, size_report = _fit_auto(
            candidates, train_configs, test_configs, config, progress, stages, log
        )
        size_curve_plot(
            [SizeCandidate(**c) for c in size_report["candidates"]],
            size_report["chosen"],
            out / "size_curve.png",
        )
    else:
        (model,) = candidates.values()
        result = _fit(model, train_configs, test_configs, config, progress, stages)
        size_report = {"mode": config.size, "chosen": config.size, "candidates": []}
    clock = time.perf_counter()
    committee = None
    if config.solver == "blr":
        from mlff.uncertainty import Committee

        committee = Committee.from_fit(result, train_configs, config.committee_size, config.seed)
    stages["committee"] = time.perf_counter() - clock
    report = {
        "kind": "fit",
        "train": [str(p) for p in train],
        "test": [str(p) for p in test or []],
        "keys": {k: v for k, v in asdict(config.keys).items()},
        "elements": elements,
        "e0": {"values": e0, "source": e0_source},
        "configurations": {
            "train": _counts(train_configs),
            "test": _counts(test_configs or []),
        },
        "parameters": result.model.length_basis(),
        "size": size_report,
        "solver": {"name": config.solver, "noise_std": result.solution.noise_std},
        "committee": None
        if committee is None
        else {"size": len(committee.thetas), "scale_eV": committee.scale},
        "errors": {k: v.to_dict() for k, v in result.errors.items()},
        "config": config.to_dict(),
    }
    _write_run(out, result, committee, report, train_configs, test_configs, stages)
    return report


def _fit_auto(candidates, train, test, config: FitConfig, progress, stages: dict, log):
    """The size of largest evidence (:func:`~mlff.fitting.size.choose_size`), fitted."""
    from mlff.fitting.assembly import Weights
    from mlff.fitting.fit import FitResult, fit_errors
    from mlff.fitting.size import choose_size

    weights = Weights(**config.weights, per_config_type=config.config_type_weights)
    clock = time.perf_counter()
    name, model, solution, n_rows, results = choose_size(
        candidates, train, weights, config.n_workers, progress, log
    )
    stages["assemble and choose size"] = time.perf_counter() - clock
    for c in results:
        log(
            f"  size {c.name}: {c.parameters} parameters, log evidence {c.log_evidence:.6g}, "
            f"residual {c.residual_rms:.4g}" + ("  <- chosen" if c.name == name else "")
        )
    errors = fit_errors(model, train, test, stages)
    report = {"mode": "auto", "chosen": name, "candidates": [c.to_dict() for c in results]}
    return FitResult(model=model, solution=solution, errors=errors, n_rows=n_rows), report


def _fit(model, train, test, config: FitConfig, progress: bool, stages: dict):
    from mlff.fitting.assembly import Weights
    from mlff.fitting.fit import fit
    from mlff.fitting.solvers import BLR, QR

    weights = Weights(**config.weights, per_config_type=config.config_type_weights)
    solver = BLR() if config.solver == "blr" else QR(config.ridge)
    return fit(
        model,
        train,
        solver=solver,
        weights=weights,
        test=test,
        normal_equations=True,
        n_workers=config.n_workers,
        progress=progress,
        timings=stages,
    )


def _write_run(out: Path, result, committee, report: dict, train, test, stages: dict) -> None:
    from mlff.calculators import SiteCalculator
    from mlff.fitting.errors import ErrorTable, predict
    from mlff.fitting.parity import parity_plot
    from mlff.io import atomic_write, save_model

    clock = time.perf_counter()
    metadata = {"kind": "fit", "elements": report["elements"], "train": report["train"]}
    save_model(result.model, out / "student.json", metadata=metadata, committee=committee)
    calc = SiteCalculator(result.model)
    images = []
    for name, configs in (("train", train), ("test", test)):
        if configs:
            predictions = predict(calc, configs)
            parity_plot(configs, predictions, out / f"parity_{name}.png", title=name)
            images.append(f"parity_{name}.png")
    stages["report"] = time.perf_counter() - clock
    report["seconds"] = {k: round(v, 3) for k, v in stages.items()}
    atomic_write(
        out / "report.json",
        lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2, default=_plain)),
    )
    lines = [
        f"# Fitted student: {', '.join(report['train'])}",
        "",
        f"- elements: {', '.join(report['elements'])}; parameters: {report['parameters']}",
        "- E0 (eV): "
        + ", ".join(f"{e} {v:.6g}" for e, v in report["e0"]["values"].items())
        + f" ({report['e0']['source']})",
        "- configurations: "
        + "; ".join(
            f"{name} " + ", ".join(f"{k} {v}" for k, v in counts.items())
            for name, counts in report["configurations"].items()
            if counts
        ),
        f"- size: {report['size']['chosen']} ({report['size']['mode']})"
        + (
            "; candidates: "
            + ", ".join(
                f"{c['name']} P={c['parameters']} log evidence {c['log_evidence']:.6g}"
                for c in report["size"]["candidates"]
            )
            if report["size"]["candidates"]
            else ""
        ),
        "- seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()),
        "",
    ]
    for name in ("test", "train"):
        if name in report["errors"]:
            table = ErrorTable.from_dict(report["errors"][name])
            lines += [f"## Errors, {name}", "", "```", str(table), "```", ""]
    if report["size"]["candidates"]:
        images.append("size_curve.png")
    lines += [f"![{image}]({image})" for image in images]
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
