"""The run report: report.json, report.md, parity plots and the learning curve (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlff.fitting import ErrorTable
from mlff.io import _atomic_write

__all__ = ["write_report", "parity_data"]


def parity_data(calculator, dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(reference, predicted) arrays: energy per atom (eV/atom) and force components (eV/Å)."""
    from mlff.fitting.labels import read_labels

    e_ref, e_pred, f_ref, f_pred = [], [], [], []
    for index, atoms in enumerate(dataset):
        labels = read_labels(atoms, index)
        probe = atoms.copy()
        probe.calc = calculator
        if labels.energy is not None:
            e_ref.append(labels.energy / len(atoms))
            e_pred.append(probe.get_potential_energy() / len(atoms))
        if labels.forces is not None:
            f_ref.append(labels.forces.reshape(-1))
            f_pred.append(probe.get_forces().reshape(-1))
    return {
        "energy": (np.array(e_ref), np.array(e_pred)),
        "forces": (
            np.concatenate(f_ref) if f_ref else np.zeros(0),
            np.concatenate(f_pred) if f_pred else np.zeros(0),
        ),
    }


def _plots(report: dict, result, validation, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlff.calculators import SiteCalculator

    names = []
    data = parity_data(SiteCalculator(result.model), validation)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, (prop, unit) in zip(axes, [("energy", "eV/atom"), ("forces", "eV/Å")], strict=True):
        ref, pred = data[prop]
        if ref.size:
            lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
            ax.scatter(ref, pred, s=6, alpha=0.6)
        ax.set_xlabel(f"teacher {prop} ({unit})")
        ax.set_ylabel(f"student {prop} ({unit})")
        ax.set_title(f"{prop}: validation parity")
    fig.tight_layout()
    fig.savefig(out / "parity.png", dpi=120)
    plt.close(fig)
    names.append("parity.png")

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


def write_report(report: dict, result, out: Path, validation) -> None:
    """Write report.json, report.md and the PNG plots (parity on ``validation``) into ``out``."""
    images = _plots(report, result, validation, out) if validation else []
    _atomic_write(
        out / "report.json",
        lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2, default=str)),
    )
    speed = report["speed"]
    lines = [
        f"# Distilled student: {report['structure']} from {report['teacher']}",
        "",
        f"- elements: {', '.join(report['elements'])}; parameters: {report['parameters']}",
        f"- training labels (teacher calls): {report['labels']}",
        "",
        "## Errors against the teacher",
        "",
        "Validation (held out, teacher-labelled):",
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
        "## Speed (same structure, same run)",
        "",
        f"| calculator | s / MD step ({speed['atoms']} atoms) |",
        "|---|---|",
        f"| teacher | {speed['teacher_s_per_step']:.4f} |",
        f"| student | {speed['student_s_per_step']:.4f} |",
        "",
        f"Speed-up: **{speed['speedup']:.0f}×**",
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
    _atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
