"""The run report: report.json, report.md, parity plots and the learning curve (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

from mlff.fitting import ErrorTable
from mlff.io import atomic_write

__all__ = ["build_report", "physics_lines", "write_report"]


def _plots(report: dict, result, validation, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlff.calculators import SiteCalculator
    from mlff.fitting.errors import predict
    from mlff.fitting.parity import parity_plot

    predictions = predict(SiteCalculator(result.model), validation)
    parity_plot(validation, predictions, out / "parity.png", "validation", "teacher", "student")
    names = ["parity.png"]

    curve = report["learning_curve"]
    if curve:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        calls = [c["teacher_calls"] for c in curve]
        ax.plot(calls, [c["forces_rmse"] for c in curve], "o-", label="forces (meV/Å)")
        ax.plot(calls, [c["energy_rmse"] for c in curve], "s-", label="energy (meV/atom)")
        ax.set_xlabel("teacher calls (training labels)")
        ax.set_ylabel("validation RMSE")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "learning_curve.png", dpi=120)
        plt.close(fig)
        names.append("learning_curve.png")
    return names


def build_report(
    *,
    name: str,
    config,
    seeds,
    levels,
    elements,
    result,
    committee,
    curve,
    teacher,
    reference: dict,
    settings,
    validation,
    teacher_calls: dict,
    out: Path,
    log=print,
) -> dict:
    """Assess the final student (physics against the teacher, holes, MD survival), time it
    against the teacher, and write report.json, report.md and the plots into ``out``."""
    from mlff.calculators import SiteCalculator
    from mlff.distill.assess import assess_student
    from mlff.distill.loop import time_side_by_side
    from mlff.distill.sampling import seed_structure, supercell

    student = SiteCalculator(result.model)
    log("assessing the student: physics against the teacher, hole scans, MD survival")
    assessment = assess_student(
        student,
        seeds,
        levels,
        config.pressure_range()[1],
        reference,
        settings,
        survival_steps=config.survival_steps,
        timestep=config.timestep,
        seed=config.seed,
        out=out,
    )
    timing_cell = supercell(seed_structure(config.structures[0]), config.timing_atoms)
    steps = time_side_by_side(
        {"student": student, "teacher": teacher},
        timing_cell,
        {"student": max(3, config.timing_steps * 10), "teacher": config.timing_steps},
    )
    report = {
        "teacher": name,
        "structure": config.structures,
        "temperature_K": [levels[0], levels[-1]],
        "pressure_GPa": list(config.pressure_range()),
        "elements": list(elements),
        "labels": teacher_calls["training"],
        "teacher_calls": teacher_calls,
        "parameters": result.model.length_basis(),
        "committee": {"size": len(committee.thetas), "scale_eV": committee.scale},
        "errors": {k: v.to_dict() for k, v in result.errors.items()},
        "learning_curve": curve,
        "assessment": assessment,
        "speed": {
            "atoms": len(timing_cell),
            "teacher_s_per_step": steps["teacher"],
            "student_s_per_step": steps["student"],
            "speedup": steps["teacher"] / steps["student"],
        },
        "config": config.to_dict(),
    }
    write_report(report, result, out, validation)
    return report


def physics_lines(assessment: dict) -> list[str]:
    """The markdown of an assessment: physics tables, hole scans and MD survival."""
    from mlff.distill.physics import format_physics_table
    from mlff.holes import holes_table

    lines = []
    for seed, physics in assessment["physics"].items():
        verdict = "pass" if physics["comparison"]["passed"] else "**fail**"
        lines += [f"### {seed}: teacher vs student ({verdict})", ""]
        lines += [format_physics_table(physics["comparison"]), ""]
    for seed, scans in assessment["holes"].items():
        lines += [f"### Energy holes, {seed} (energy must rise to 0.5 Å)", ""]
        lines += [holes_table(scans), ""]
    for seed, runs in assessment["survival"].items():
        lines += [
            f"### MD survival, {seed}",
            "",
            "| run | T (K) | P (GPa) | time (ps) | survived | closest pair (Å) | NVE drift "
            "(meV/atom/ps) |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, run in runs.items():
            drift = (run.get("nve") or {}).get("energy_drift") or {}
            closest = run.get("closest_pair_A")
            lines.append(
                f"| {label} | {run['temperature_K']:.0f} | {run['pressure_GPa'] or 0:g} | "
                f"{run['time_ps']:g} | {'yes' if run['survived'] else '**no**'} | "
                f"{closest if closest is None else f'{closest:.2f}'} | "
                f"{drift.get('drift_meV_atom_ps', float('nan')):.3g} |"
            )
        lines.append("")
    return lines


def write_report(report: dict, result, out: Path, validation) -> None:
    """Write report.json, report.md and the PNG plots (parity on ``validation``) into ``out``."""
    images = _plots(report, result, validation, out) if validation else []
    images += report["assessment"]["plots"]
    atomic_write(
        out / "report.json",
        lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2, default=str)),
    )
    speed, calls = report["speed"], report["teacher_calls"]
    lines = [
        f"# Distilled student: {', '.join(report['structure'])} from {report['teacher']}",
        "",
        f"- elements: {', '.join(report['elements'])}; parameters: {report['parameters']}",
        "- domain: {:.0f}-{:.0f} K, {:g}-{:g} GPa".format(
            *report["temperature_K"], *report["pressure_GPa"]
        ),
        f"- teacher calls: {calls['total']} (training {calls['training']}, validation "
        f"{calls['validation']}, physics {calls['physics']})",
        "",
        "## Errors against the teacher",
        "",
        "Validation (held out, teacher-labelled; `liquid`: frames of the teacher's own liquid):",
        "",
        "```",
        str(ErrorTable.from_dict(report["errors"]["test"]))
        if "test" in report["errors"]
        else "(none)",
        "```",
        "",
        "Training:",
        "",
        "```",
        str(ErrorTable.from_dict(report["errors"]["train"])),
        "```",
        "",
        "## Physics, holes and MD survival",
        "",
        *physics_lines(report["assessment"]),
        "## Speed (same structure, same run)",
        "",
        f"| calculator | s / MD step ({speed['atoms']} atoms) |",
        "|---|---|",
        f"| teacher | {speed['teacher_s_per_step']:.4f} |",
        f"| student | {speed['student_s_per_step']:.4f} |",
        "",
        f"Speed-up: **{speed['speedup']:.3g}×**",
        "",
        "## Learning curve",
        "",
        "| round | teacher calls | E RMSE (meV/atom) | F RMSE (meV/Å) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c['round']} | {c['teacher_calls']} | {c['energy_rmse']:.2f} | {c['forces_rmse']:.1f} |"
        for c in report["learning_curve"]
    ]
    lines += [""] + [f"![{name}]({name})" for name in images]
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
