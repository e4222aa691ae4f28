"""Teacher vs student: :data:`DEFAULT_TOLERANCES`, :func:`compare_physics` and its markdown
table :func:`format_physics_table`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlff.distill.physics.liquid import rdf_l1
from mlff.distill.physics.settings import _float, _num

__all__ = ["DEFAULT_TOLERANCES", "compare_physics", "format_physics_table"]

# ----------------------------------------------------------------------------------------------
# comparison

#: Default tolerances on |relative error| (g(r): on the L1 difference itself), from the product
#: requirements. ``None`` reports a value without judging it.
DEFAULT_TOLERANCES: dict[str, float | None] = {
    "a0": 0.002,
    "B0": 0.03,
    "B0'": None,
    "C11": 0.05,
    "C12": 0.05,
    "C44": 0.05,
    "Cij": 0.05,  # the other entries of a non-cubic matrix
    "vacancy": 0.05,
    "vacancy_unrelaxed": 0.05,
    "surface": 0.05,
    "phonon_max": 0.02,
    "gr_l1": 0.05,
    "diffusion": 0.20,
}

# (row name, section, key, unit); "elastic" rows come from the matrix (see _elastic_rows).
_SCALARS = (
    ("a0", "eos", "a0_A", "Å"),
    ("B0", "eos", "B0_GPa", "GPa"),
    ("B0'", "eos", "B0_prime", ""),
    ("elastic", "elastic", None, "GPa"),
    ("phonon_max", "phonons", "max_THz", "THz"),
    ("vacancy", "vacancy", "relaxed_eV", "eV"),
    ("vacancy_unrelaxed", "vacancy", "unrelaxed_eV", "eV"),
    ("surface", "surface", "energy_J_m2", "J/m²"),
    ("diffusion", "liquid", "diffusion_A2_ps", "Å²/ps"),
)


def _tolerances(tolerances: Mapping[str, float | None] | None) -> dict[str, float | None]:
    merged = dict(DEFAULT_TOLERANCES)
    for name, value in (tolerances or {}).items():
        if name not in merged:
            raise ValueError(f"unknown tolerance {name!r}; known: {', '.join(DEFAULT_TOLERANCES)}")
        if value is not None:
            _float(f"tolerance {name!r}", value, 0.0)
        merged[name] = value
    return merged


def _row(
    name: str,
    section: str,
    unit: str,
    teacher,
    student,
    tol: float | None,
    noise: float | None = None,
) -> dict:
    t, s = _num(teacher), _num(student)
    if t is None or s is None:
        error = None
    elif t == 0.0:
        error = 0.0 if s == 0.0 else math.copysign(math.inf, s)
    else:
        error = (s - t) / abs(t)
    return _judged(
        {"property": name, "section": section, "unit": unit, "teacher": t, "student": s},
        _num(error),
        "relative",
        tol,
        noise,
    )


def _judged(row: dict, error: float | None, kind: str, tol: float | None, noise) -> dict:
    """Complete a row: pass/fail on |error| <= tol, and whether a failure is within twice the
    statistical noise of the comparison (same units as the error; None when not estimated)."""
    passed = None if tol is None else (error is not None and abs(error) <= tol)
    noise = _num(noise)
    within = (
        None if passed is not False or noise is None or error is None else abs(error) <= 2 * noise
    )
    return {
        **row,
        "error": error,
        "error_kind": kind,
        "tolerance": tol,
        "noise": noise,
        "passed": passed,
        "within_noise": within,
    }


def _mean_known(*values) -> float | None:
    known = [float(v) for v in values if _num(v) is not None]
    return sum(known) / len(known) if known else None


def _elastic_rows(t: Mapping, s: Mapping, tol: dict) -> list[dict]:
    if t.get("cubic"):
        return [
            _row(name, "elastic", "GPa", t[f"{name}_GPa"], s.get(f"{name}_GPa"), tol[name])
            for name in ("C11", "C12", "C44")
        ]
    tm = np.array(t["matrix_GPa"], dtype=float)
    sm = np.array(s.get("matrix_GPa") or np.full((6, 6), np.nan), dtype=float)
    big = 0.05 * np.abs(tm).max()
    rows = []
    for i in range(6):
        for j in range(i, 6):
            if abs(tm[i, j]) >= big:
                name = f"C{i + 1}{j + 1}"
                rows.append(
                    _row(name, "elastic", "GPa", tm[i, j], sm[i, j], tol.get(name, tol["Cij"]))
                )
    return rows


def compare_physics(
    teacher: Mapping[str, Any],
    student: Mapping[str, Any],
    tolerances: Mapping[str, float | None] | None = None,
) -> dict:
    """Teacher vs student, property by property.

    ``teacher`` and ``student`` are results of :func:`crystal_physics` and/or
    :func:`liquid_physics` (merged dicts are fine). ``tolerances`` override
    :data:`DEFAULT_TOLERANCES` by name. A property the teacher has but the student lacks, or has
    as None/non-finite, fails; one the teacher lacks is skipped.

    Returns {"rows": [{property, section, unit, teacher, student, error (signed: relative
    (s−t)/|t|, or the g(r) L1 difference), error_kind, tolerance, noise, passed,
    within_noise}], "passed", "failed": [names], "skipped": [names]}. ``noise`` (liquid rows
    only) is the difference two independent runs of the same potential would show, estimated
    from each run's halves; ``within_noise`` marks a failure no larger than twice it, i.e. one
    a longer or larger liquid run may resolve.
    """
    tol = _tolerances(tolerances)
    rows, skipped = [], []
    for name, section, key, unit in _SCALARS:
        t, s = teacher.get(section), student.get(section) or {}
        if section == "elastic":
            if t and t.get("matrix_GPa") is not None:
                rows += _elastic_rows(t, s, tol)
            else:
                skipped.append(name)
        elif not t or _num(t.get(key)) is None:
            skipped.append(name)
        elif name == "phonon_max" and abs(t[key]) < 0.1:  # only acoustic modes at Γ
            skipped.append(name)
        else:
            noise = None
            if name == "diffusion":  # the spread of D between independent runs, relative
                spread = _mean_known(t.get("diffusion_noise_A2_ps"), s.get("diffusion_noise_A2_ps"))
                noise = spread / abs(t[key]) if spread is not None and t[key] else None
            rows.append(_row(name, section, unit, t[key], s.get(key), tol[name], noise))
    t_liq, s_liq = teacher.get("liquid"), student.get("liquid") or {}
    if t_liq and t_liq.get("g_r"):
        l1 = (
            rdf_l1(s_liq["r_A"], s_liq["g_r"], t_liq["r_A"], t_liq["g_r"])
            if s_liq.get("g_r")
            else None
        )
        noise = _mean_known(t_liq.get("g_r_noise_l1"), s_liq.get("g_r_noise_l1"))
        row = {"property": "gr_l1", "section": "liquid", "unit": "", "teacher": None}
        rows.append(_judged({**row, "student": None}, _num(l1), "l1", tol["gr_l1"], noise))
    else:
        skipped.append("gr_l1")
    judged = [r for r in rows if r["passed"] is not None]
    return {
        "rows": rows,
        "passed": all(r["passed"] for r in judged),
        "failed": [r["property"] for r in judged if not r["passed"]],
        "skipped": skipped,
    }


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.4g}"


def format_physics_table(comparison: Mapping[str, Any]) -> str:
    """A markdown table of :func:`compare_physics`' rows."""
    lines = [
        "| property | unit | teacher | student | error | noise | tolerance | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison["rows"]:
        error = row["error"]
        if error is None:
            err = "—"
        elif row["error_kind"] == "l1":
            err = f"L1 {100 * error:.2f}%"
        else:
            err = f"{100 * error:+.2f}%"
        tol = "—" if row["tolerance"] is None else f"{100 * row['tolerance']:.3g}%"
        verdict = {True: "pass", False: "**FAIL**", None: "—"}[row["passed"]]
        if row.get("within_noise"):
            verdict += " (within noise: run longer)"
        noise = row.get("noise")
        noise = "—" if noise is None else f"±{100 * noise:.2g}%"
        lines.append(
            f"| {row['property']} | {row['unit']} | {_fmt(row['teacher'])} | "
            f"{_fmt(row['student'])} | {err} | {noise} | {tol} | {verdict} |"
        )
    verdict = (
        "all checks pass" if comparison["passed"] else "failed: " + ", ".join(comparison["failed"])
    )
    return "\n".join(lines) + f"\n\n{verdict}\n"
