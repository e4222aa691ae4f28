"""Reference (one-body) energies estimated from labelled data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms

from mlff.fitting.labels import read_labels

__all__ = ["estimate_e0"]


def estimate_e0(
    dataset: Iterable[Atoms], elements: Sequence[str] | None = None
) -> dict[str, float]:
    """E0 per element (eV) by least squares of total energies on element counts.

    The ACE and pair bases have no constant function, so the per-atom energy level must come
    from ``OneBody``; these values make the fitted parts describe only the interactions.
    Configurations without an energy label are skipped.
    """
    rows, energies = [], []
    atoms_list = list(dataset)
    if elements is None:
        elements = sorted({s for atoms in atoms_list for s in atoms.get_chemical_symbols()})
    elements = list(elements)
    for index, atoms in enumerate(atoms_list):
        labels = read_labels(atoms, index)
        if labels.energy is None:
            continue
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(elements))
        if unknown:
            raise ValueError(
                f"configuration {index} contains {', '.join(unknown)}, not in elements {elements}"
            )
        rows.append([symbols.count(e) for e in elements])
        energies.append(labels.energy)
    if not rows:
        raise ValueError("no configuration has an energy label; E0 cannot be estimated")
    counts = np.array(rows, dtype=float)
    missing = [e for e, c in zip(elements, counts.sum(0), strict=True) if c == 0]
    if missing:
        raise ValueError(
            f"no labelled configuration contains {', '.join(missing)}; "
            "E0 cannot be estimated for it"
        )
    e0, *_ = np.linalg.lstsq(counts, np.array(energies), rcond=None)
    return {e: float(v) for e, v in zip(elements, e0, strict=True)}
