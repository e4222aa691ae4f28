"""``mlff compare STUDENT --teacher NAME``: the distillation report's trust checks (physics
against the teacher, energy holes, MD survival) for any student, on any seeds."""

from __future__ import annotations

import json
from pathlib import Path

from mlff.distill.assess import assess_student, teacher_physics
from mlff.distill.config import DistillConfig
from mlff.distill.teachers import check_teacher_elements, get_teacher, teacher_name

__all__ = ["compare_student"]


def _student(spec: str, device: str):
    from mlff.md.loading import load_calculator

    return load_calculator(spec, device=device)


def compare_student(
    student: str,
    teacher: str,
    structures: list[str] | None = None,
    temperature: str | None = None,
    pressure: str | None = None,
    out: str = "mlff-compare",
    device: str = "cpu",
    survival_steps: int | None = None,
    config: DistillConfig | None = None,
) -> dict:
    """Run the checks and write ``compare.json`` / ``compare.md`` (and plots) into ``out``.

    Seeds, temperature and pressure ranges default to what the student was distilled on
    (its checkpoint metadata), else to :class:`~mlff.distill.config.DistillConfig`'s defaults.
    Returns the assessment with ``teacher_calls``, ``markdown`` and ``passed``.
    """
    from mlff.distill.loop import _physics_settings, domain_seeds, temperature_levels
    from mlff.distill.report import physics_lines
    from mlff.io import atomic_write

    loaded = _student(student, device)
    metadata = getattr(loaded.calc, "metadata", None) or {}
    if loaded.kind != "student":
        raise ValueError(f"STUDENT = {student!r} names a teacher; give a student run directory")
    base = config or DistillConfig()
    overrides = {
        "structure": structures or metadata.get("structure") or base.structure,
        "temperature": temperature or metadata.get("temperature_K") or base.temperature,
        "pressure": pressure or metadata.get("pressure_GPa") or base.pressure,
        "out": out,
        "device": device,
        "survival_steps": survival_steps or base.survival_steps,
    }
    config = DistillConfig.from_mapping({**base.to_dict(), **overrides, "teacher": teacher})
    seeds = domain_seeds(config)
    levels = temperature_levels(config, seeds)
    elements = sorted({e for s in seeds for e in s.atoms.get_chemical_symbols()})
    calc = get_teacher(teacher, device=device)
    check_teacher_elements(calc, elements)
    settings = _physics_settings(config)
    reference, _ = teacher_physics(calc, seeds, levels[-1], settings, config.seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    result = assess_student(
        loaded.calc,
        seeds,
        levels,
        config.pressure_range()[1],
        reference,
        settings,
        survival_steps=config.survival_steps,
        timestep=config.timestep,
        seed=config.seed,
        out=folder,
    )
    result["teacher"] = teacher_name(teacher)
    result["teacher_calls"] = {"physics": reference["calls"], "total": reference["calls"]}
    lines = [f"# {student} against {result['teacher']}", "", *physics_lines(result)]
    lines += [f"![{p}]({p})" for p in result["plots"]]
    result["markdown"] = "\n".join(lines) + "\n"
    atomic_write(folder / "compare.md", lambda tmp: Path(tmp).write_text(result["markdown"]))
    document = json.dumps({k: v for k, v in result.items() if k != "markdown"}, default=float)
    atomic_write(folder / "compare.json", lambda tmp: Path(tmp).write_text(document))
    return result
