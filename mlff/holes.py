"""Energy-hole scans: does a potential reward atoms it pushes together?

A potential has a *hole* where its energy falls as two atoms approach each other inside the
repulsive wall: MD finds such a place and collapses into it. Three scans probe the wall, each
bringing atoms from ``start·r_nn`` (``r_nn``: the pair's nearest-neighbour distance in the
crystal) down to ``r_min`` (0.5 Å by default):

- ``dimer``: two isolated atoms of each element pair;
- ``bulk``: one atom of the crystal pushed along its bond into its nearest neighbour of each
  element, the rest of the crystal fixed;
- ``cluster``: an atom with its neighbours cut from the crystal (no periodicity), squeezed
  isotropically about its centre.

Each scan passes when the energy rises monotonically as the distance shrinks: no step inward
may lower it by more than ``tolerance`` (eV). The scans cost one energy call per grid point
(``points`` per scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

__all__ = ["HoleScan", "hole_scans", "holes_table", "scan_structure"]


@dataclass
class HoleScan:
    """One scan: distances (Å, decreasing) and energies (eV) along it.

    ``worst_drop`` is the largest energy decrease (eV) of one step inward, at ``worst_at`` (Å).
    """

    kind: str
    pair: tuple[str, str]
    distances: np.ndarray
    energies: np.ndarray
    tolerance: float
    worst_drop: float = field(init=False)
    worst_at: float = field(init=False)

    def __post_init__(self):
        steps = np.diff(self.energies)  # energies[k + 1] - energies[k], one step inward
        k = int(np.argmin(steps)) if steps.size else 0
        bad = not np.all(np.isfinite(self.energies))
        self.worst_drop = float("inf") if bad else max(0.0, -float(steps[k]) if steps.size else 0.0)
        self.worst_at = float(self.distances[k + 1]) if steps.size else float(self.distances[0])

    @property
    def passed(self) -> bool:
        return self.worst_drop <= self.tolerance

    @property
    def name(self) -> str:
        return f"{self.kind} {'-'.join(self.pair)}"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "pair": list(self.pair),
            "passed": self.passed,
            "worst_drop_eV": self.worst_drop,
            "worst_at_A": self.worst_at,
            "distances_A": self.distances.tolist(),
            "energies_eV": self.energies.tolist(),
        }


def _energy(atoms: Atoms, calc) -> float:
    probe = atoms.copy()
    probe.calc = calc
    return float(probe.get_potential_energy())


def _pair_distances(atoms: Atoms) -> dict[tuple[str, str], tuple[int, int, float, np.ndarray]]:
    """The shortest bond of each element pair in ``atoms``: (i, j, distance, vector i→j)."""
    i, j, d, D = neighbor_list("ijdD", atoms, 6.0)
    symbols = atoms.get_chemical_symbols()
    best: dict[tuple[str, str], tuple[int, int, float, np.ndarray]] = {}
    for a, b, dist, vec in zip(i, j, d, D, strict=True):
        key = tuple(sorted((symbols[a], symbols[b])))
        if key not in best or dist < best[key][2] - 1e-9:
            best[key] = (int(a), int(b), float(dist), vec)
    return best


def _dimer(crystal: Atoms, bond, pair, r: float) -> Atoms:
    return Atoms(list(pair), positions=[[0, 0, 0], [r, 0, 0]], pbc=False)


def _bulk(crystal: Atoms, bond, pair, r: float) -> Atoms:
    i, _, r_nn, vec = bond
    atoms = crystal.copy()
    atoms.positions[i] += (r_nn - r) * vec / np.linalg.norm(vec)  # along the bond, inward
    return atoms


def _cluster(crystal: Atoms, bond, pair, r: float) -> Atoms:
    """The atom of ``bond`` and every atom within 1.2 r_nn of it, squeezed about it."""
    i, _, r_nn, _ = bond
    centers, j, D = neighbor_list("ijD", crystal, 1.2 * r_nn, self_interaction=False)
    mine = centers == i
    symbols = crystal.get_chemical_symbols()
    return Atoms(
        [symbols[i]] + [symbols[k] for k in j[mine]],
        positions=np.vstack([np.zeros(3), D[mine]]) * (r / r_nn),
        pbc=False,
    )


_BUILDERS = {"dimer": _dimer, "bulk": _bulk, "cluster": _cluster}


def scan_structure(kind: str, crystal: Atoms, pair: tuple[str, str], r: float) -> Atoms:
    """The structure of scan ``kind`` for element ``pair`` of ``crystal`` at distance ``r`` (Å):
    what the scans evaluate, and what a distillation labels where a scan finds a hole."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown scan kind {kind!r}; known: {', '.join(_BUILDERS)}")
    bonds = _pair_distances(crystal)
    key = tuple(sorted(pair))
    if key not in bonds:
        raise ValueError(f"{crystal.get_chemical_formula()} has no {'-'.join(key)} bond to scan")
    return _BUILDERS[kind](crystal, bonds[key], key, float(r))


def hole_scans(
    calc,
    crystal: Atoms,
    r_min: float = 0.5,
    start: float = 0.9,
    points: int = 40,
    tolerance: float = 1e-3,
    kinds: tuple[str, ...] = ("dimer", "bulk", "cluster"),
) -> list[HoleScan]:
    """Scans of ``calc`` for every element pair bonded in ``crystal`` (see the module docs).

    Args:
        crystal: a periodic structure with bonds between the pairs to scan; its shortest bond
            of each pair sets ``r_nn``.
        r_min: the innermost distance, Å.
        start: the outermost distance as a fraction of ``r_nn``; inside it the wall must rise.
        points: grid points per scan, evenly spaced.
        tolerance: the energy drop (eV) one step inward may show without failing.

    Returns one :class:`HoleScan` per kind and pair.
    """
    unknown = sorted(set(kinds) - {"dimer", "bulk", "cluster"})
    if unknown:
        raise ValueError(f"unknown scan kind(s) {unknown}; known: dimer, bulk, cluster")
    if not (0 < r_min and 0 < start and points >= 3 and tolerance >= 0):
        raise ValueError(
            f"need r_min > 0, start > 0, points >= 3 and tolerance >= 0; got r_min={r_min}, "
            f"start={start}, points={points}, tolerance={tolerance}"
        )
    bonds = _pair_distances(crystal)
    if not bonds:
        raise ValueError("the crystal has no bonds shorter than 6 Å to scan")
    scans = []
    for pair, bond in sorted(bonds.items()):
        r_start = start * bond[2]
        if r_start <= r_min:
            raise ValueError(
                f"{'-'.join(pair)}: start·r_nn = {r_start:.3f} Å is not above r_min = {r_min} Å"
            )
        distances = np.linspace(r_start, r_min, points)
        for kind in kinds:
            energies = [_energy(_BUILDERS[kind](crystal, bond, pair, r), calc) for r in distances]
            scans.append(HoleScan(kind, pair, distances, np.array(energies), tolerance))
    return scans


def holes_table(scans) -> str:
    """A markdown table of scans (:class:`HoleScan` or their ``to_dict()``): pass/fail and the
    worst inward energy drop."""
    lines = ["| scan | passed | worst drop (eV) | at (Å) |", "|---|---|---|---|"]
    for s in scans:
        d = s.to_dict() if isinstance(s, HoleScan) else s
        lines.append(
            f"| {d['kind']} {'-'.join(d['pair'])} | {'yes' if d['passed'] else '**no**'} | "
            f"{d['worst_drop_eV']:.3g} | {d['worst_at_A']:.2f} |"
        )
    return "\n".join(lines)
