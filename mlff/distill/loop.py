"""The distillation loop over the domain the user states: seeds × temperatures × pressures.

teacher physics and held-out validation → label generated structures → fit → student MD at
every temperature (and melt-quench) → rank by the committee's extrapolation grade → label →
… → checkpoint (with its committee) → physics of the student against the teacher → report.

Everything a run produces goes to its directory: ``labels.db`` (the store), ``validation.db``,
``teacher_physics.json``, the student checkpoint ``student.json`` + ``student.*.safetensors``
and ``report.json`` / ``report.md`` with plots. Rerunning with the same directory resumes:
labels, validation and the teacher's physics are never paid for twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from mlff.distill import sampling
from mlff.distill.assess import teacher_physics
from mlff.distill.config import DistillConfig
from mlff.distill.physics import CountingCalculator, PhysicsSettings
from mlff.distill.selection import select_by_committee
from mlff.distill.store import LabelStore
from mlff.distill.teachers import check_teacher_elements, get_teacher, teacher_name
from mlff.fitting import BLR, Weights, estimate_e0, fit
from mlff.io import atomic_write, model_config, save_model, validate_config
from mlff.models import PairModel
from mlff.models.default import default_stack
from mlff.stack import Stack
from mlff.thermal import thermalize
from mlff.uncertainty import Committee

__all__ = ["DistillConfig", "distill", "build_student", "GENERATORS", "Seed", "domain_seeds"]

#: Generators by their config name; each takes (atoms, n, seed=...) and yields candidates.
GENERATORS = {
    "rattle": sampling.rattled,
    "strain": sampling.strained,
    "vacancy": sampling.vacancies,
    "divacancy": sampling.divacancies,
    "interstitial": sampling.interstitials,
    "slab": sampling.slabs,
    "compressed": sampling.compressed,
    "cluster": sampling.clusters,
    "packing": sampling.packings,
}
#: Atoms of a squeezed cluster: a centre and about two shells. Measured on Si: 17-atom
#: clusters leave the fit's crystal and liquid errors as they were and close the holes; with
#: 32 the clusters' forces (11 eV/Å RMSE) dominate the fit and open a 130 eV dimer hole.
CLUSTER_ATOMS = 17
#: Hole-scan structures are labelled only down to this fraction of r0 (the sum of covalent
#: radii): SevenNet-0's own Si dimer rises only down to about 0.5 r0 and turns over below.
HOLE_LABEL_MIN = 0.55
#: Core rows: isolated dimers from CORE_ROW_MIN · r0 up to HOLE_LABEL_MIN · r0, labelled by
#: the student's own ZBL core: they pull the fitted pair towards adding no force where no
#: teacher data reach, so that the ZBL wall decides there. Without them the pair's
#: polynomial, fitted only above the floor, turned over just below it (dimer and cluster
#: holes at 1.14-1.21 Å in Si, whatever the ZBL switch radii; docs/distillation.md).
CORE_ROW_MIN = 0.3
CORE_ROW_POINTS = 10
#: Generators that need a 3D-periodic bulk seed.
_BULK_ONLY = {"strain", "compressed", "slab", "packing", "divacancy"}


@dataclass
class Seed:
    """One ``--structure``: its name, the small cell it came as, the supercell the loop
    samples from, and whether it is a bulk crystal (3D-periodic without a vacuum gap)."""

    name: str
    cell: Atoms
    atoms: Atoms
    bulk: bool


def _has_vacuum(atoms: Atoms, gap: float = 4.0) -> bool:
    """A periodic cell with an empty layer thicker than ``gap`` Å along a cell vector."""
    scaled = atoms.get_scaled_positions() % 1.0
    for axis in range(3):
        width = atoms.cell.volume / np.linalg.norm(
            np.cross(*(atoms.cell[k] for k in range(3) if k != axis))
        )
        s = np.sort(scaled[:, axis])
        gaps = np.diff(np.concatenate([s, [s[0] + 1.0]])) * width
        if gaps.max() > gap:
            return True
    return False


def domain_seeds(config: DistillConfig) -> list[Seed]:
    """The run's seeds, each made into a supercell of about ``target_atoms`` atoms."""
    out = []
    for name, atoms in sampling.seed_structures(config.structures):
        bulk = bool(atoms.pbc.all()) and not _has_vacuum(atoms)
        out.append(Seed(name, atoms, sampling.supercell(atoms, config.target_atoms), bulk))
    return out


def build_student(elements, e0: Mapping[str, float], config: DistillConfig) -> Stack:
    """OneBody + PairModel + ACEModel at the run's cutoff (:func:`~mlff.models.default_stack`)."""
    return default_stack(elements, e0, config.cutoff, config.ace, config.pair)


def check_student(elements, config: DistillConfig) -> None:
    """Refuse, before any teacher call, a student that :func:`~mlff.io.save_model` would
    refuse after the first fit (an ACE basis or cutoff beyond the checkpoint bounds)."""
    student = build_student(elements, {e: 0.0 for e in elements}, config)
    validate_config(model_config(student), where="student")


def temperature_levels(config: DistillConfig, seeds: list[Seed]) -> tuple[float, ...]:
    """``temperature_levels`` temperatures (K) spread evenly over the run's range."""
    if config.temperature is None:
        lo, hi = sampling.default_temperature_range([s.name for s in seeds])
    else:
        from mlff.distill.config import parse_range

        lo, hi = parse_range(config.temperature, "temperature", "K")
    return tuple(float(t) for t in np.linspace(lo, hi, config.temperature_levels))


def _strain_range(config: DistillConfig, bulk_modulus: float) -> tuple[float, float]:
    """(compression, tension) linear strains for :func:`~mlff.distill.sampling.compressed`:
    compression to 1.5 × the largest pressure of the range, tension to half that (GPa), at
    least 3 % and 2 %."""
    p_lo, p_hi = config.pressure_range()
    top = max(abs(p_hi), abs(p_lo), 1.0) * 1.5
    compression = -sampling.volumetric_strain_for_pressure(top, bulk_modulus)
    tension = sampling.volumetric_strain_for_pressure(
        -min(top, 0.3 * bulk_modulus) / 2, bulk_modulus
    )
    return float(np.clip(compression, 0.02, 0.2)), float(np.clip(tension, 0.01, 0.1))


def _generate(
    seeds: list[Seed], table: Mapping[str, int], base: int, strains: tuple[float, float]
) -> list:
    """Candidates from the generators in ``table`` (counts per seed) for every seed."""
    out = []
    for s, seed in enumerate(seeds):
        for k, (name, count) in enumerate(table.items()):
            if not count or (name in _BULK_ONLY and not seed.bulk):
                continue
            kwargs: dict[str, Any] = {"seed": base + 1000 * s + k}
            if name == "compressed":
                kwargs.update(max_compression=strains[0], max_tension=strains[1])
            if name == "cluster":  # an atom and its first shells: 32 squeezed atoms poison a fit
                kwargs.update(size=CLUSTER_ATOMS)
            for atoms, config_type, meta in GENERATORS[name](seed.atoms, int(count), **kwargs):
                out.append((atoms, config_type, {**meta, "structure": seed.name}))
    return out


def _recipe_key(config: DistillConfig, names: tuple[str, ...]) -> str:
    recipe = {k: getattr(config, k) for k in names}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:10]


class _TeacherReference:
    """The teacher's side of the run, paid once and kept: physics of every bulk seed, liquid
    runs at the top temperature (whose frames are the held-out liquid set), and the generated
    validation set. ``calls`` says what each part cost."""

    def __init__(self, out: Path, teacher, name: str, seeds, config, top: float, progress):
        self.path = out / "teacher_physics.json"
        key = _recipe_key(
            config,
            ("structure", "target_atoms", "seed", "physics", "physics_settings", "temperature")
            + ("liquid_steps", "liquid_equilibration", "liquid_interval", "timestep"),
        )
        self.settings = _physics_settings(config)
        cached = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.physics: dict = cached.get("physics", {}) if cached.get("key") == key else {}
        liquid_store = LabelStore(out / "validation.db", teacher=f"{name}:liquid:{key}")
        if config.physics and self.physics.get("complete") is not True:
            self.physics, frames = teacher_physics(teacher, seeds, top, self.settings, config.seed)
            for seed_name, labelled in frames.items():
                for frame in labelled:
                    liquid_store.add(frame, "liquid", {"structure": seed_name, "temperature": top})
            self.physics["complete"] = True
            document = json.dumps({"key": key, "physics": self.physics}, default=float)
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(document))
        self.liquid = liquid_store.configurations()
        self.validation, self.validation_calls = _validation_set(
            out, teacher, name, seeds, config, progress
        )

    @property
    def physics_calls(self) -> int:
        return int(self.physics.get("calls", 0))


def _physics_settings(config: DistillConfig) -> PhysicsSettings:
    base = {
        "liquid_steps": config.liquid_steps,
        "liquid_equilibration": config.liquid_equilibration,
        "liquid_interval": config.liquid_interval,
        "liquid_timestep_fs": config.timestep,
        "seed": config.seed,
    }
    return PhysicsSettings.from_mapping({**base, **config.physics_settings})


def _validation_set(out: Path, teacher, name: str, seeds, config, progress) -> tuple[list, int]:
    """Held-out structures labelled by the teacher, kept in ``validation.db`` under a key of
    the settings that define them; complete once a marker file (holding the cost) is written.

    Two kinds: generated structures (``validation``), and frames of the teacher's own MD of
    every bulk seed at each temperature of ``validation_md`` (K → frames, taken from the
    second half of ``validation_md_steps`` steps: the crystal as MD really visits it). Every
    MD step is a teacher call and counts.
    """
    recipe = ("structure", "target_atoms", "seed", "validation", "pressure", "timestep")
    key = _recipe_key(config, recipe + ("validation_md", "validation_md_steps"))
    store = LabelStore(out / "validation.db", teacher=f"{name}:validation:{key}")
    marker = out / f"validation-{key}.complete"
    if marker.exists():
        return store.configurations(), int(json.loads(marker.read_text())["calls"])
    counter = CountingCalculator(teacher)
    for s, seed in enumerate(seeds):
        if not seed.bulk:
            continue
        for k, (temperature, count) in enumerate(config.validation_md.items()):
            steps = config.validation_md_steps
            interval = max(1, steps // (2 * int(count)))
            frames = sampling.md_frames(
                seed.atoms,
                counter,
                float(temperature),
                steps,
                interval,
                config.timestep,
                config.seed + 7919 + 100 * s + k,
                config_type=f"md_{int(float(temperature))}K",
            )
            kept = [f for f in frames if f[2]["step"] > steps // 2][: int(count)]
            store.label([(a, t, {**m, "structure": seed.name}) for a, t, m in kept], counter)
    strains = _strain_range(config, 100.0)
    candidates = _generate(seeds, config.validation, config.seed * 1000 + 500_000, strains)
    store.label(candidates, counter, progress=progress)
    marker.write_text(json.dumps({"calls": counter.calls, "validation": config.validation}))
    return store.configurations(), counter.calls


def _student_md(seeds, calc, levels, config: DistillConfig, round_index: int, strains) -> list:
    """Student MD candidates of one round: every seed at every temperature level, a melt and
    quench of each bulk seed, and the hottest level in a compressed cell under pressure."""
    out = []
    base = config.seed * 100_000 + round_index * 1000
    _, p_hi = config.pressure_range()
    for s, seed in enumerate(seeds):
        for k, temperature in enumerate(levels):
            out += sampling.md_frames(
                seed.atoms,
                calc,
                temperature,
                config.md_steps,
                config.md_interval,
                config.timestep,
                base + 10 * s + k,
                config_type=f"md_{int(temperature)}K",
            )
        if not seed.bulk:
            continue
        if config.melt_quench:
            out += sampling.melt_quench(
                seed.atoms,
                calc,
                levels[-1],
                levels[0],
                2 * config.md_steps,
                config.md_interval,
                config.timestep,
                base + 10 * s + 7,
            )
        if p_hi > 0:
            squeezed = seed.atoms.copy()
            squeezed.set_cell(squeezed.cell.array * (1 - strains[0] / 2), scale_atoms=True)
            out += sampling.md_frames(
                squeezed,
                calc,
                levels[-1],
                config.md_steps,
                config.md_interval,
                config.timestep,
                base + 10 * s + 8,
                config_type="md_pressure",
                pressure=p_hi,
            )
    return [(a, t, {**m, "round": round_index}) for a, t, m in out]


def distill(
    config: DistillConfig | Mapping[str, Any], teacher=None, progress: bool = True, log=print
) -> dict:
    """Run (or resume) a distillation; returns the report dictionary."""
    if not isinstance(config, DistillConfig):
        config = DistillConfig.from_mapping(config)
    config.validate()
    seeds = domain_seeds(config)
    levels = temperature_levels(config, seeds)
    elements = sorted({e for seed in seeds for e in seed.atoms.get_chemical_symbols()})
    requested = teacher if teacher is not None else config.teacher  # a name or a calculator
    teacher = get_teacher(requested, device=config.device)
    if config.teacher_batch > 1 and not hasattr(teacher, "label_batch"):
        raise ValueError(
            f"teacher_batch = {config.teacher_batch} needs a teacher that labels batches (a "
            f"torch-sim model: mlff.distill.TorchSimTeacher); {teacher_name(requested)} labels "
            "one structure per call"
        )
    check_teacher_elements(teacher, elements)
    check_student(elements, config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    name = teacher_name(requested)  # the store key: labels of different teachers never mix
    store = LabelStore(out / "labels.db", teacher=name)
    log(
        f"teacher {name}; {len(seeds)} seed(s): "
        + ", ".join(f"{s.name} ({len(s.atoms)} atoms)" for s in seeds)
        + f"; {levels[0]:.0f}-{levels[-1]:.0f} K; pressure "
        + "{:g}-{:g} GPa".format(*config.pressure_range())
        + f"; store {len(store)} labels"
    )
    reference = _TeacherReference(out, teacher, name, seeds, config, levels[-1], progress)
    spent = reference.physics_calls + reference.validation_calls
    training_budget = config.budget - spent
    if training_budget < config.per_round:
        raise ValueError(
            f"budget = {config.budget} teacher calls leaves {training_budget} for training after "
            f"physics ({reference.physics_calls}) and validation ({reference.validation_calls}); "
            f"raise --budget to at least {spent + 4 * config.per_round}"
        )
    test = reference.validation + reference.liquid
    strains = _strain_range(config, 100.0)
    calls = store.label(
        _generate(seeds, config.initial, config.seed * 1000, strains),
        teacher,
        progress=progress,
        budget=max(0, training_budget - len(store)),
        batch=config.teacher_batch,
    )
    weights = Weights(**config.weights, per_config_type=dict(config.config_type_weights))
    curve, best, stale = [], np.inf, 0
    for round_index in range(config.rounds + 1):
        train, rejected = trusted_labels(store.configurations(), config.max_label_force)
        if rejected:
            shown = "; ".join(rejected[:3]) + ("; …" if len(rejected) > 3 else "")
            log(f"  {len(rejected)} teacher label(s) left out of the fit: {shown}")
        # E0 from the rows whose energies are fitted: a hole row's energy (weight 0) can be
        # anything the teacher says at a short distance, and it would move every E0.
        energetic = [a for a in train if weights.weight("energy", _kind(a)) > 0]
        student = build_student(elements, estimate_e0(energetic or train, elements), config)
        core = core_rows(elements, config) if config.core_rows else []
        result = fit(student, train + core, solver=BLR(), weights=weights, test=test)
        # The grade's scale comes from the fully weighted rows: squeezed clusters and packings,
        # weighted down, are the most uncertain atoms by far and would hide every excursion.
        typical = [a for a in train if weights.weight("forces", _kind(a)) >= weights.forces]
        committee = Committee.from_fit(
            result, typical or train, size=config.committee_size, seed=config.seed + round_index
        )
        errors = result.errors["test"]
        curve.append(_curve_point(round_index, len(store), errors))
        log(
            f"round {round_index}: {len(store)} labels, validation "
            f"E {errors.rmse('energy'):.2f} meV/atom, F {errors.rmse('forces'):.1f} meV/Å"
        )
        metadata = _metadata(name, config, elements, result, len(store), levels)
        save_model(student, out / "student", metadata=metadata, committee=committee)
        score = errors.rmse("forces")
        best, stale = (score, 0) if score < best * 0.98 else (best, stale + 1)
        if (
            stale >= config.patience
            or len(store) >= training_budget
            or round_index == config.rounds
        ):
            break
        if round_index == 0 and any(s.bulk for s in seeds):
            strains = _strain_range(config, _student_bulk_modulus(result.model, seeds))
        if config.hole_rows:  # the wall first: a hole found now is labelled before MD frames
            holes = _hole_candidates(result.model, seeds, round_index)
            calls += store.label(
                holes,
                teacher,
                budget=max(0, training_budget - len(store)),
                batch=config.teacher_batch,
            )
        calc = result.calculator()
        candidates = _student_md(seeds, calc, levels, config, round_index, strains)
        candidates += _generate(
            seeds, config.round_candidates, config.seed * 1000 + 100 * (round_index + 1), strains
        )
        n_new = min(config.per_round, training_budget - len(store))
        picked = select_by_committee(candidates, result.model, committee, n_new)
        calls += store.label(
            [c for c, _ in picked], teacher, progress=progress, batch=config.teacher_batch
        )
    ledger = {
        "training": len(store),
        "validation": reference.validation_calls,
        "physics": reference.physics_calls,
    }
    ledger["total"] = sum(ledger.values())
    from mlff.distill.report import build_report

    return build_report(
        name=name,
        config=config,
        seeds=seeds,
        levels=levels,
        elements=elements,
        result=result,
        committee=committee,
        curve=curve,
        teacher=teacher,
        reference=reference.physics,
        settings=reference.settings,
        validation=test,
        teacher_calls={**ledger, "this_run": calls},
        out=out,
        log=log,
    )


def trusted_labels(configs: list[Atoms], max_force: float) -> tuple[list[Atoms], list[str]]:
    """The labelled configurations the fit may use, and a line for each left out: labels that
    are not finite or whose largest force component exceeds ``max_force`` (eV/Å). A teacher
    far outside its own data can answer anything (SevenNet-0 gives 10^12 eV/Å on a squeezed
    SiO2 cluster); the label stays in the store, paid for, but never enters a fit."""
    kept, rejected = [], []
    for atoms in configs:
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        largest = float(np.abs(forces).max()) if forces.size else 0.0
        if np.isfinite(energy) and np.isfinite(forces).all() and largest <= max_force:
            kept.append(atoms)
        else:
            rejected.append(f"{_kind(atoms)} {atoms.get_chemical_formula()} |F| {largest:.3g}")
    return kept, rejected


def core_rows(elements, config: DistillConfig) -> list[Atoms]:
    """Isolated dimers of every element pair at CORE_ROW_POINTS distances from CORE_ROW_MIN to
    HOLE_LABEL_MIN × r0 (Å), labelled with the energy and forces of the student's ZBL core
    alone (a pair model with no fitted part), config_type ``core``; none when the student
    has no core (``pair.repulsion = false``). Not teacher labels: never stored, no calls."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from mlff.calculators import SiteCalculator
    from mlff.models.radial import default_r0

    core_only = PairModel(elements, cutoff=config.cutoff, **{**config.pair, "n_max": 1})
    if core_only.repulsion is None:
        return []
    calc = SiteCalculator(core_only)
    r0 = config.pair.get("r0")
    r0 = default_r0(elements) if r0 is None else r0
    rows = []
    for a, b in core_only.pairs:
        for r in np.linspace(CORE_ROW_MIN, HOLE_LABEL_MIN, CORE_ROW_POINTS) * float(r0[a][b]):
            dimer = Atoms([elements[a], elements[b]], positions=[[0, 0, 0], [r, 0, 0]])
            dimer.center(vacuum=6.0)
            dimer.calc = calc
            energy, forces = dimer.get_potential_energy(), dimer.get_forces()
            dimer.calc = SinglePointCalculator(dimer, energy=energy, forces=forces)
            dimer.info["config_type"] = "core"
            rows.append(dimer)
    return rows


def _hole_candidates(model, seeds: list[Seed], round_index: int) -> list:
    """The scan structures around each energy hole of the student (:mod:`mlff.holes`) where
    the teacher can still be trusted (pair distance >= HOLE_LABEL_MIN · r0): labelled, they
    teach the wall where the student got it wrong."""
    from mlff.calculators import SiteCalculator
    from mlff.holes import hole_scans, scan_structure
    from mlff.models.radial import default_r0

    calc = SiteCalculator(model)
    out = []
    for seed in seeds:
        if not seed.bulk:
            continue
        elements = sorted(set(seed.atoms.get_chemical_symbols()))
        r0 = default_r0(elements)
        for scan in hole_scans(calc, seed.atoms, start=0.8):
            if scan.passed:
                continue
            a, b = (elements.index(e) for e in scan.pair)
            floor = HOLE_LABEL_MIN * float(r0[a, b])
            k = int(np.argmin(np.abs(scan.distances - scan.worst_at)))
            for r in scan.distances[max(0, k - 2) : k + 2]:
                if r >= floor:
                    atoms = scan_structure(scan.kind, seed.atoms, scan.pair, r)
                    meta = {"scan": scan.kind, "pair": list(scan.pair), "distance": float(r)}
                    out.append((atoms, "hole", {**meta, "structure": seed.name}))
    return [(a, t, {**m, "round": round_index}) for a, t, m in out]


def _kind(atoms: Atoms) -> str:
    return str(atoms.info.get("config_type", "default"))


def _student_bulk_modulus(model, seeds: list[Seed]) -> float:
    """The student's bulk modulus (GPa) of the first bulk seed, for the pressure → strain map."""
    from mlff.calculators import SiteCalculator

    seed = next(s for s in seeds if s.bulk)
    try:
        return float(sampling.estimate_bulk_modulus(seed.cell, SiteCalculator(model)))
    except (ValueError, RuntimeError):
        return 100.0


def _curve_point(round_index: int, labels: int, errors) -> dict:
    return {
        "round": round_index,
        "teacher_calls": labels,
        "energy_rmse": errors.rmse("energy"),
        "forces_rmse": errors.rmse("forces"),
        "stress_rmse": errors.rows["all"].get("stress", {}).get("rmse"),
    }


def _metadata(name, config: DistillConfig, elements, result, n_labels: int, levels) -> dict:
    return {
        "teacher": name,
        "structure": config.structures,
        "temperature_K": [levels[0], levels[-1]],
        "pressure_GPa": list(config.pressure_range()),
        "elements": list(elements),
        "labels": n_labels,
        "errors": {k: v.to_dict() for k, v in result.errors.items()},
        "config": config.to_dict(),
    }


def time_side_by_side(calcs: dict, atoms: Atoms, steps: dict, rounds: int = 3) -> dict[str, float]:
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
