"""Benchmark structures: a preset or file, repeated into a size class."""

from __future__ import annotations

from ase import Atoms

__all__ = ["SIZES", "resolve_size", "sized_structure", "load_structure"]

#: Size classes: (fewest, most) atoms.
SIZES: dict[str, tuple[int, int]] = {"small": (32, 64), "medium": (128, 256), "large": (512, 1024)}


def resolve_size(size: str | int) -> str | int:
    """A size class's canonical name, or a positive number of atoms; anything else raises
    ``ValueError`` listing what is accepted."""
    if isinstance(size, str) and size.strip().lower() in SIZES:
        return size.strip().lower()
    try:
        n = int(size)
    except (TypeError, ValueError):
        n = None
    if n is None or isinstance(size, float) and size != n:
        classes = ", ".join(f"{k} ({a}-{b} atoms)" for k, (a, b) in SIZES.items())
        raise ValueError(f"unknown size {size!r}; accepted: {classes} or a number of atoms")
    if n < 1:
        raise ValueError(f"size must be a positive number of atoms, got {size!r}")
    return n


def load_structure(structure: str | Atoms) -> Atoms:
    """A copy of ``structure`` (Atoms), or a preset name / ASE-readable file (last frame)."""
    if isinstance(structure, Atoms):
        atoms = structure.copy()
    else:
        from mlff.distill.sampling import seed_structure

        atoms = seed_structure(str(structure))
    atoms.calc = None
    if len(atoms) == 0:
        raise ValueError(f"structure {structure!r} has no atoms")
    return atoms


def sized_structure(structure: str | Atoms, size: str | int) -> Atoms:
    """``structure`` repeated (diagonally, as cubic as its cell allows) to the size class
    ``size`` (``"small"``, ``"medium"``, ``"large"``) or to at least ``size`` atoms.

    A named size must land inside its range; a cell too large for it raises ``ValueError``.
    A structure that is not 3D-periodic (molecule, slab) is used as it is, and must already
    have the atoms asked for.
    """
    from mlff.distill.sampling import supercell

    key = resolve_size(size)
    atoms = load_structure(structure)
    low, high = SIZES[key] if isinstance(key, str) else (key, None)
    if atoms.pbc.all():
        atoms = supercell(atoms, low)
    if len(atoms) < low or (high is not None and len(atoms) > high):
        if isinstance(key, str):
            raise ValueError(
                f"structure {atoms.get_chemical_formula()} ({len(atoms)} atoms after repetition) "
                f"does not fit size {key!r} ({low}-{high} atoms); give a number of atoms "
                "instead, or another size"
            )
        raise ValueError(
            f"structure {atoms.get_chemical_formula()} is not 3D-periodic and has {len(atoms)} "
            f"atoms, fewer than the {low} asked for"
        )
    return atoms
