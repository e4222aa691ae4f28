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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mlff.fitting.data import LabelKeys, isolated_atom_energies, read_dataset

__all__ = ["FitConfig", "fit_run"]


@dataclass
class FitConfig:
    """Settings of ``mlff fit``; every field can come from ``--config fit.toml`` under the same
    name (``mlff fit --print-config`` prints them all).

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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        config = cls(**dict(data))
        config.validate()
        return config

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
    model = default_stack(elements, e0, config.cutoff, config.ace, config.pair)
    stages["read"] = time.perf_counter() - clock
    log(
        f"{len(train_configs)} training configurations ({sum(len(a) for a in train_configs)} "
        f"atoms), {len(test_configs or [])} test; elements {', '.join(elements)}; "
        f"{model.length_basis()} parameters; E0 from {e0_source}"
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = _fit(model, train_configs, test_configs, config, progress, stages)
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
        "solver": {"name": config.solver, "noise_std": result.solution.noise_std},
        "committee": None
        if committee is None
        else {"size": len(committee.thetas), "scale_eV": committee.scale},
        "errors": {k: v.to_dict() for k, v in result.errors.items()},
        "config": config.to_dict(),
    }
    _write_run(out, result, committee, report, train_configs, test_configs, stages)
    return report


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
        "- seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()),
        "",
    ]
    for name in ("test", "train"):
        if name in report["errors"]:
            table = ErrorTable.from_dict(report["errors"][name])
            lines += [f"## Errors, {name}", "", "```", str(table), "```", ""]
    lines += [f"![{image}]({image})" for image in images]
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
