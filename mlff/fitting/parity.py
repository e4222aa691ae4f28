"""Parity plots (PNG): predicted against reference energy per atom, force components and
stress components, one colour per config_type."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import GPa

from mlff.fitting.errors import Prediction
from mlff.fitting.labels import read_labels
from mlff.io import atomic_write

__all__ = ["parity_plot", "parity_points"]

_PANELS = (("energy", "eV/atom"), ("forces", "eV/Å"), ("stress", "GPa"))


def parity_points(
    dataset: Sequence[Atoms], predictions: Sequence[Prediction]
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``points[property][config_type] = (reference, predicted)`` in the panels' units."""
    points: dict[str, dict[str, tuple[list, list]]] = {p: {} for p, _ in _PANELS}
    for index, (atoms, pred) in enumerate(zip(dataset, predictions, strict=True)):
        labels = read_labels(atoms, index)
        pairs = []
        if labels.energy is not None:
            n = len(atoms)
            pairs.append(("energy", [labels.energy / n], [pred.energy / n]))
        if labels.forces is not None:
            pairs.append(("forces", labels.forces.ravel(), pred.forces.ravel()))
        if labels.stress is not None and pred.stress is not None:
            pairs.append(("stress", labels.stress / GPa, pred.stress / GPa))
        for prop, ref, got in pairs:
            refs, gots = points[prop].setdefault(labels.config_type, ([], []))
            refs.extend(np.asarray(ref, dtype=float))
            gots.extend(np.asarray(got, dtype=float))
    return {
        prop: {ct: (np.array(r), np.array(g)) for ct, (r, g) in groups.items()}
        for prop, groups in points.items()
    }


def parity_plot(
    dataset: Sequence[Atoms],
    predictions: Sequence[Prediction],
    path: str | Path,
    title: str = "",
    reference: str = "reference",
    predicted: str = "mlff",
) -> Path:
    """Write the parity PNG to ``path`` (atomically) and return it; panels without labels
    say so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = parity_points(dataset, predictions)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (prop, unit) in zip(axes, _PANELS, strict=True):
        groups = points[prop]
        if not groups:
            ax.text(0.5, 0.5, f"no {prop} labels", ha="center", va="center")
            ax.set_axis_off()
            continue
        lo = min(min(r.min(), g.min()) for r, g in groups.values())
        hi = max(max(r.max(), g.max()) for r, g in groups.values())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        for config_type, (ref, got) in sorted(groups.items()):
            ax.scatter(ref, got, s=6, alpha=0.6, label=config_type)
        ax.set_xlabel(f"{reference} {prop} ({unit})")
        ax.set_ylabel(f"{predicted} {prop} ({unit})")
        ax.set_title(f"{prop}{': ' + title if title else ''}")
        if len(groups) > 1:
            ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
