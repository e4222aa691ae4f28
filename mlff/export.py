"""``mlff export``: a student written as a potential file that LAMMPS's ``pair_style mlff``
reads (``lammps/``), and a ready input script beside it.

The file holds exactly what the compiled CPU route evaluates (:meth:`SiteModel.compiled` in
float64): the same parts, folded the same way (:mod:`mlff.stack`), with the same tables. So the
plugin is a second implementation of one route, not of the models, and a test compares the two
to rounding. The format (version :data:`FORMAT_VERSION`) is plain text, readable without
Python, and documented in ``docs/lammps.md``::

    mlff_potential 1
    # comment lines start with '#'
    elements 2 O Si
    masses 2 15.999 28.085
    cutoff 5.0
    parts 3
    part ace ACEModel
    <entries>
    end
    ...

An entry is ``name type ndim dim_1 … dim_ndim`` on one line, then its prod(dims) values in
row-major order, whitespace-separated over as many lines as they take; ``type`` is ``int`` or
``float`` (written with 17 significant digits, so float64 survives the round trip) and
``ndim`` 0 is a scalar. Every part has ``cutoff`` (Å) and ``species`` (its elements as indices
into the file's ``elements``); the other entries per kind are listed in ``docs/lammps.md``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import numpy as np
from ase.data import atomic_masses, atomic_numbers

from mlff.io import atomic_write, load_model
from mlff.protocol import CompiledPart, SiteModel

__all__ = ["FORMAT_VERSION", "POTENTIAL_SUFFIX", "export_lammps", "write_potential"]

#: Bumped whenever a reader of an older version would misread a newer file.
FORMAT_VERSION = 1
POTENTIAL_SUFFIX = ".mlff"
_PER_LINE = 6


def _entry(out: TextIO, name: str, values, kind: str) -> None:
    array = np.asarray(values)
    shape = " ".join(str(d) for d in array.shape)
    out.write(f"{name} {kind} {array.ndim}{' ' + shape if shape else ''}\n")
    flat = array.reshape(-1)
    if kind == "float":
        text = [repr(float(v)) if np.isfinite(v) else "nan" for v in flat.astype(np.float64)]
        bad = [i for i, t in enumerate(text) if t == "nan"]
        if bad:
            raise ValueError(f"table {name!r} has non-finite values at flat indices {bad[:5]}")
    else:
        text = [str(int(v)) for v in flat]
    for first in range(0, len(text), _PER_LINE):
        out.write(" ".join(text[first : first + _PER_LINE]) + "\n")


def _floats(out: TextIO, name: str, values) -> None:
    _entry(out, name, values, "float")


def _ints(out: TextIO, name: str, values) -> None:
    _entry(out, name, np.asarray(values, dtype=np.int64), "int")


def _radial(out: TextIO, radial) -> None:
    _floats(out, "radial.inv_r0", radial.inv_r0)
    _floats(out, "radial.scale", radial.scale)
    _floats(out, "radial.offset", radial.offset)
    _ints(out, "radial.agnesi_p", radial.agnesi_p)
    _ints(out, "radial.agnesi_q", radial.agnesi_q)
    _floats(out, "radial.agnesi_a", radial.agnesi_a)
    _floats(out, "radial.cutoff", radial.cutoff)
    _ints(out, "radial.envelope_p", radial.envelope_p)
    _floats(out, "radial.inner_start", radial.inner_start)
    _floats(out, "radial.inner_end", radial.inner_end)


def _part(out: TextIO, part: CompiledPart, elements: tuple[str, ...]) -> None:
    out.write(f"part {part.kind} {part.owner.replace(' ', '_')}\n")
    _floats(out, "cutoff", part.cutoff)
    _ints(out, "species", [elements.index(e) for e in part.elements])
    t = part.tables
    if part.kind == "onebody":
        _floats(out, "e0", t)
    elif part.kind == "pair":
        _radial(out, t.radial)
        _ints(out, "pair_index", t.pair_index)
        _floats(out, "weight", t.weight)
    elif part.kind == "zbl":
        _floats(out, "z", t.z)
        _floats(out, "r_inner", t.r_inner)
        _floats(out, "r_outer", t.r_outer)
    elif part.kind == "ace":
        _radial(out, t.radial)
        _ints(out, "n_max", t.n_max)
        _ints(out, "n_channels", t.n_channels)
        h, p, r = t.harmonics, t.products, t.readout
        _ints(out, "harmonics.exps", h.exps)
        _ints(out, "harmonics.lower", h.lower)
        _ints(out, "harmonics.degree_start", h.degree_start)
        _floats(out, "harmonics.ycoef", h.ycoef)
        _ints(out, "products.n_rows", p.n_rows)
        _ints(out, "products.dest", p.dest)
        _ints(out, "products.left", p.left)
        _ints(out, "products.right", p.right)
        _floats(out, "products.weight", p.weight)
        _ints(out, "readout.out", r.out)
        _ints(out, "readout.inp", r.inp)
        _floats(out, "readout.values", r.values)
        _floats(out, "readout.site_constant", r.site_constant)
    else:
        raise ValueError(
            f"{part.owner} compiles to a part of kind {part.kind!r}, which the LAMMPS format "
            "does not know; known: onebody, pair, zbl, ace"
        )
    out.write("end\n")


def _compiled_parts(model: SiteModel) -> tuple[CompiledPart, ...]:
    parts = model.compiled(np.dtype(np.float64))
    if parts is None:
        raise ValueError(
            f"{type(model).__name__} has a part without a compiled CPU kernel, so it cannot be "
            "exported; exportable parts: OneBody, PairModel (with or without ZBL), ACEModel"
        )
    return parts


def write_potential(model: SiteModel, out: TextIO, source: str = "") -> None:
    """Write ``model`` in the potential format (module docstring) to the text stream ``out``."""
    elements = tuple(model.elements)
    parts = _compiled_parts(model)
    masses = [float(atomic_masses[atomic_numbers[e]]) for e in elements]
    out.write(f"mlff_potential {FORMAT_VERSION}\n")
    out.write("# pair_style mlff potential, written by mlff export; format: docs/lammps.md\n")
    if source:
        out.write(f"# from {source}\n")
    out.write(f"elements {len(elements)} {' '.join(elements)}\n")
    out.write(f"masses {len(masses)} {' '.join(repr(m) for m in masses)}\n")
    out.write(f"cutoff {max(p.cutoff for p in parts)!r}\n")
    out.write(f"parts {len(parts)}\n")
    for part in parts:
        _part(out, part, elements)


def _input_script(potential: Path, elements: Iterable[str], masses: list[float]) -> str:
    elements = list(elements)
    lines = [
        "# A ready LAMMPS input for the exported student: replace the data file with yours.",
        "# The plugin line is what `mlff lammps build` prints last.",
        "units           metal",
        "atom_style      atomic",
        "boundary        p p p",
        "read_data       data.lmp",
        "",
        "plugin load     PLUGIN_PATH",
        "pair_style      mlff",
        f"pair_coeff      * * {potential.name} {' '.join(elements)}",
        "",
    ]
    lines += [f"mass            {k + 1} {m!r}" for k, m in enumerate(masses)]
    lines += [
        "",
        "neighbor        1.0 bin",
        "timestep        0.001",
        "velocity        all create 300.0 12345 mom yes rot yes",
        "fix             nve all nve",
        "thermo_style    custom step temp pe ke etotal press",
        "thermo          100",
        "run             1000",
        "",
    ]
    return "\n".join(lines)


def export_lammps(
    student: SiteModel | str | os.PathLike, out_dir: str | os.PathLike, name: str | None = None
) -> Path:
    """Write ``student`` (a model, a run directory or a ``student.json``) to
    ``out_dir/<name>.mlff`` with an example ``in.mlff`` beside it; returns the potential's path.

    Both files are written atomically (a reader never sees half a file). ``name`` defaults to
    the run directory's or checkpoint's name, ``student`` for a model.
    """
    if isinstance(student, SiteModel):
        model, source = student, ""
        default = "student"
    else:
        path = Path(student)
        model, _ = load_model(path)
        source = str(path)
        default = path.name if path.is_dir() else path.with_suffix("").name
    name = name or default
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain file name, got {name!r}")
    model = model.to("cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}{POTENTIAL_SUFFIX}"
    text = io.StringIO()
    write_potential(model, text, source)
    atomic_write(target, lambda tmp: Path(tmp).write_text(text.getvalue()))
    elements = list(model.elements)
    masses = [float(atomic_masses[atomic_numbers[e]]) for e in elements]
    script = _input_script(target, elements, masses)
    atomic_write(out / "in.mlff", lambda tmp: Path(tmp).write_text(script))
    return target
