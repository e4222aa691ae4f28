"""The distillation loop: label → fit → student MD → select by committee → label → …

Everything a run produces goes to its directory: ``labels.db`` (the store), the student
checkpoint ``student.json`` + ``student.safetensors``, and ``report.json`` / ``report.md`` with
plots. Rerunning with the same directory resumes from the store.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin

from mlff.distill.sampling import rattled, seed_structure, strained, supercell, surfaces, vacancies
from mlff.distill.selection import select_by_committee
from mlff.distill.store import LabelStore
from mlff.distill.teachers import check_teacher_elements, get_teacher, teacher_name
from mlff.fitting import BLR, Weights, estimate_e0, fit
from mlff.io import model_config, save_model, validate_config
from mlff.models import ACEModel, OneBody, PairModel
from mlff.stack import Stack
from mlff.thermal import thermalize

__all__ = ["DistillConfig", "distill", "build_student", "GENERATORS"]

GENERATORS = {"rattle": rattled, "strain": strained, "vacancy": vacancies, "surface": surfaces}


@dataclass
class DistillConfig:
    """Settings of a distillation run (every field can come from the ``--config`` TOML file).

    Counts are numbers of structures; temperatures are K, times fs, lengths Å.
    """

    teacher: str = "sevennet-0"
    structure: str = "Si-diamond"
    out: str = "mlff-run"
    device: str = "cpu"
    seed: int = 0
    target_atoms: int = 64
    budget: int = 400  # teacher calls for training labels
    initial: dict = field(
        default_factory=lambda: {"rattle": 40, "strain": 24, "vacancy": 16, "surface": 16}
    )
    rounds: int = 8
    per_round: int = 32
    patience: int = 2
    round_candidates: dict = field(default_factory=lambda: {"strain": 24, "vacancy": 8})
    md_temperatures: list = field(default_factory=lambda: [300.0, 600.0, 900.0, 1200.0, 1500.0])
    md_steps: int = 400
    md_interval: int = 20
    timestep: float = 2.0
    validation_md: dict = field(default_factory=lambda: {"600": 6, "1200": 6})
    validation: dict = field(default_factory=lambda: {"vacancy": 4, "strain": 4})
    validation_md_steps: int = 150
    cutoff: float = 5.0
    ace: dict = field(default_factory=dict)
    pair: dict = field(default_factory=lambda: {"n_max": 8, "repulsion": True})
    weights: dict = field(default_factory=lambda: {"energy": 30.0, "forces": 1.0, "virial": 10.0})
    committee_size: int = 16
    timing_atoms: int = 216
    timing_steps: int = 6

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DistillConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        config = cls(**dict(data))
        config.validate()
        return config

    def validate(self) -> None:
        minimum = {"committee_size": 2, "rounds": 0}
        for name in (
            "budget",
            "rounds",
            "per_round",
            "target_atoms",
            "md_steps",
            "md_interval",
            "committee_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum.get(name, 1):
                raise ValueError(
                    f"{name} must be an integer >= {minimum.get(name, 1)}, got {value!r}"
                )
        if self.timestep <= 0 or self.cutoff <= 0:
            raise ValueError(
                f"timestep and cutoff must be positive, got {self.timestep} and {self.cutoff}"
            )
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience must be a positive integer, got {self.patience!r}")
        for name in ("initial", "validation", "round_candidates"):
            unknown = sorted(set(getattr(self, name)) - set(GENERATORS))
            if unknown:
                raise ValueError(
                    f"unknown generator(s) {', '.join(unknown)} in {name}; "
                    f"known: {', '.join(GENERATORS)}"
                )


def build_student(elements, e0: Mapping[str, float], config: DistillConfig) -> Stack:
    """OneBody(E0) + PairModel + ACEModel at the run's cutoff."""
    return Stack(
        [
            OneBody(dict(e0)),
            PairModel(elements, cutoff=config.cutoff, **config.pair),
            ACEModel(elements, cutoff=config.cutoff, **config.ace),
        ]
    )


def check_student(elements, config: DistillConfig) -> None:
    """Refuse, before any teacher call, a student that :func:`~mlff.io.save_model` would
    refuse after the first fit (an ACE basis or cutoff beyond the checkpoint bounds)."""
    student = build_student(elements, {e: 0.0 for e in elements}, config)
    validate_config(model_config(student), where="student")


def _md_frames(
    atoms: Atoms,
    calc,
    temperature: float,
    steps: int,
    interval: int,
    timestep: float,
    seed: int,
    config_type: str,
) -> list[tuple[Atoms, str, dict]]:
    """Langevin MD frames every ``interval`` steps; stops early if the structure falls apart."""
    work = atoms.copy()
    work.calc = calc
    rng = np.random.default_rng(seed)
    thermalize(work, temperature, rng=rng)
    dyn = Langevin(
        work, timestep * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False
    )
    frames = []
    for block in range(steps // interval):
        dyn.run(interval)
        d = work.get_all_distances(mic=True)
        np.fill_diagonal(d, np.inf)
        if not np.isfinite(work.positions).all() or d.min() < 0.5:
            break
        frame = work.copy()
        frame.calc = None
        frames.append(
            (
                frame,
                config_type,
                {
                    "generator": "md",
                    "temperature": temperature,
                    "step": (block + 1) * interval,
                    "seed": seed,
                },
            )
        )
    return frames


def _initial_candidates(seed_atoms: Atoms, config: DistillConfig) -> list[tuple[Atoms, str, dict]]:
    out = []
    for k, (name, count) in enumerate(config.initial.items()):
        out.extend(GENERATORS[name](seed_atoms, int(count), seed=config.seed * 1000 + k))
    return out


def _validation_set(
    seed_atoms: Atoms, teacher, name: str, out: Path, config: DistillConfig
) -> list[Atoms]:
    """Held-out configurations labelled by the teacher: teacher MD frames, vacancies, strains.

    Kept in ``validation.db`` under a key that includes a hash of the settings that define the
    set, and marked complete only once every structure is labelled, so a killed run finishes
    it on rerun and changed settings get a fresh set.
    """
    recipe = {
        k: getattr(config, k)
        for k in (
            "structure",
            "target_atoms",
            "seed",
            "timestep",
            "validation",
            "validation_md",
            "validation_md_steps",
        )
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:10]
    store = LabelStore(out / "validation.db", teacher=f"{name}:validation:{key}")
    marker = out / f"validation-{key}.complete"
    if not marker.exists():
        candidates = []
        for k, (temperature, count) in enumerate(config.validation_md.items()):
            interval = max(1, config.validation_md_steps // max(1, int(count)))
            candidates.extend(
                _md_frames(
                    seed_atoms,
                    teacher,
                    float(temperature),
                    interval * int(count),
                    interval,
                    config.timestep,
                    config.seed + 7919 + k,
                    f"md_{temperature}K",
                )
            )
        for k, (gen, count) in enumerate(config.validation.items()):
            candidates.extend(
                GENERATORS[gen](seed_atoms, int(count), seed=config.seed * 1000 + 500 + k)
            )
        store.label(candidates, teacher)
        marker.write_text(json.dumps(recipe, indent=2, default=str))
    return store.configurations()


def _time_side_by_side(calcs: dict, atoms: Atoms, steps: dict, rounds: int = 3) -> dict[str, float]:
    """Median wall time (s) of one VelocityVerlet step for each calculator, on copies of the
    same structure, interleaved in ``rounds`` blocks so machine noise hits both alike."""
    from ase.md.verlet import VelocityVerlet

    dynamics, times = {}, {name: [] for name in calcs}
    for name, calc in calcs.items():
        work = atoms.copy()
        work.calc = calc
        thermalize(work, 300, rng=np.random.default_rng(0))
        dynamics[name] = VelocityVerlet(work, 1.0 * units.fs)
        dynamics[name].run(1)  # warm-up: first call builds lists and caches
    for _ in range(rounds):
        for name, dyn in dynamics.items():
            for _ in range(max(1, steps[name] // rounds)):
                start = time.perf_counter()
                dyn.run(1)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def distill(
    config: DistillConfig | Mapping[str, Any], teacher=None, progress: bool = True, log=print
) -> dict:
    """Run (or resume) a distillation; returns the report dictionary."""
    if not isinstance(config, DistillConfig):
        config = DistillConfig.from_mapping(config)
    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    requested = teacher if teacher is not None else config.teacher  # a name or a calculator
    teacher = get_teacher(requested, device=config.device)
    seed_atoms = supercell(seed_structure(config.structure), config.target_atoms)
    elements = sorted(set(seed_atoms.get_chemical_symbols()))
    check_teacher_elements(teacher, elements)
    check_student(elements, config)
    name = teacher_name(requested)  # the store key: labels of different teachers never mix
    store = LabelStore(out / "labels.db", teacher=name)
    log(
        f"teacher {name}, structure {config.structure} ({len(seed_atoms)} atoms), "
        f"store {len(store)} labels"
    )

    validation = _validation_set(seed_atoms, teacher, name, out, config)
    calls = store.label(
        _initial_candidates(seed_atoms, config),
        teacher,
        progress=progress,
        budget=max(0, config.budget - len(store)),
    )
    curve, best, stale, result = [], np.inf, 0, None
    for round_index in range(config.rounds + 1):
        train = store.configurations()
        e0 = estimate_e0(train, elements)
        student = build_student(elements, e0, config)
        result = fit(
            student, train, solver=BLR(), weights=Weights(**config.weights), test=validation
        )
        test = result.errors["test"]
        curve.append(
            {
                "round": round_index,
                "teacher_calls": len(store),
                "energy_rmse": test.rmse("energy"),
                "forces_rmse": test.rmse("forces"),
                "stress_rmse": test.rows["all"].get("stress", {}).get("rmse"),
            }
        )
        log(
            f"round {round_index}: {len(store)} labels, "
            f"validation E {test.rmse('energy'):.2f} meV/atom, "
            f"F {test.rmse('forces'):.1f} meV/Å"
        )
        save_model(
            student, out / "student", metadata=_metadata(name, config, elements, result, len(store))
        )
        score = test.rmse("forces")
        if score < best * 0.98:
            best, stale = score, 0
        else:
            stale += 1
        if stale >= config.patience or len(store) >= config.budget or round_index == config.rounds:
            break
        calc = result.calculator(committee_size=config.committee_size, seed=round_index)
        candidates = []
        for k, temperature in enumerate(config.md_temperatures):
            candidates.extend(
                _md_frames(
                    seed_atoms,
                    calc,
                    float(temperature),
                    config.md_steps,
                    config.md_interval,
                    config.timestep,
                    config.seed * 100 + round_index * 10 + k,
                    f"md_{int(temperature)}K",
                )
            )
        vac = next(vacancies(seed_atoms, 1, seed=config.seed + round_index))[0]
        candidates.extend(
            _md_frames(
                vac,
                calc,
                float(max(config.md_temperatures)),
                config.md_steps,
                config.md_interval,
                config.timestep,
                config.seed * 100 + round_index * 10 + 9,
                "md_vacancy",
            )
        )
        # Fresh generator structures compete with the MD frames for the committee's attention.
        for k, (gen, count) in enumerate(config.round_candidates.items()):
            candidates.extend(
                GENERATORS[gen](
                    seed_atoms, int(count), seed=config.seed * 1000 + 100 * (round_index + 1) + k
                )
            )
        n_new = min(config.per_round, config.budget - len(store))
        picked = select_by_committee(candidates, calc, n_new)
        calls += store.label([c for c, _ in picked], teacher, progress=progress)
    report = _report(name, config, elements, result, curve, teacher, out, calls, validation)
    return report


def _metadata(name: str, config: DistillConfig, elements, result, n_labels: int) -> dict:
    return {
        "teacher": name,
        "structure": config.structure,
        "elements": list(elements),
        "labels": n_labels,
        "errors": {k: v.to_dict() for k, v in result.errors.items()},
        "config": asdict(config),
    }


def _report(
    name, config, elements, result, curve, teacher, out: Path, calls: int, validation
) -> dict:
    from mlff.calculators import SiteCalculator
    from mlff.distill.report import write_report

    timing_cell = supercell(seed_structure(config.structure), config.timing_atoms)
    steps = _time_side_by_side(
        {"student": SiteCalculator(result.model), "teacher": teacher},
        timing_cell,
        {"student": max(3, config.timing_steps * 10), "teacher": config.timing_steps},
    )
    student_step, teacher_step = steps["student"], steps["teacher"]
    report = {
        "teacher": name,
        "structure": config.structure,
        "elements": list(elements),
        "labels": curve[-1]["teacher_calls"] if curve else 0,
        "teacher_calls_this_run": calls,
        "parameters": result.model.length_basis(),
        "errors": {k: v.to_dict() for k, v in result.errors.items()},
        "learning_curve": curve,
        "speed": {
            "atoms": len(timing_cell),
            "teacher_s_per_step": teacher_step,
            "student_s_per_step": student_step,
            "speedup": teacher_step / student_step,
        },
        "config": asdict(config),
    }
    write_report(report, result, out, validation)
    return report
