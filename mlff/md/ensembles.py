"""Ensembles: a name → an ASE integrator, with validated settings.

| name          | kind | ASE integrator                                   |
|---------------|------|--------------------------------------------------|
| ``nve``       | NVE  | ``ase.md.verlet.VelocityVerlet``                 |
| ``langevin``  | NVT  | ``ase.md.langevin.Langevin``                     |
| ``bussi``     | NVT  | ``ase.md.bussi.Bussi``                           |
| ``nose-hoover``| NVT | ``ase.md.nose_hoover_chain.NoseHooverChainNVT``  |
| ``npt-iso``   | NPT  | ``ase.md.nose_hoover_chain.IsotropicMTKNPT``     |
| ``npt``       | NPT  | ``ase.md.nose_hoover_chain.MTKNPT``              |

The integrator class names (any case) are accepted as aliases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms, units
from ase.md.md import MolecularDynamics

__all__ = [
    "ENSEMBLES",
    "EnsembleSpec",
    "MDSettings",
    "resolve_ensemble",
    "make_integrator",
    "initialize_velocities",
    "conserved_energy",
    "check_structure_for",
]


@dataclass(frozen=True)
class EnsembleSpec:
    """What an ensemble name means: its kind (NVE/NVT/NPT) and the ASE integrator it builds."""

    kind: str
    integrator: str
    build: Callable[[Atoms, MDSettings, np.random.Generator], MolecularDynamics]


def _nve(atoms, s, rng):
    from ase.md.verlet import VelocityVerlet

    return VelocityVerlet(atoms, timestep=s.timestep_fs * units.fs)


def _langevin(atoms, s, rng):
    from ase.md.langevin import Langevin

    return Langevin(
        atoms,
        s.timestep_fs * units.fs,
        temperature_K=s.temperature_K,
        friction=s.friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )


def _bussi(atoms, s, rng):
    from ase.md.bussi import Bussi

    return Bussi(
        atoms,
        s.timestep_fs * units.fs,
        temperature_K=s.temperature_K,
        taut=s.taut_fs * units.fs,
        rng=rng,
    )


def _nose_hoover(atoms, s, rng):
    from ase.md.nose_hoover_chain import NoseHooverChainNVT

    return NoseHooverChainNVT(
        atoms, s.timestep_fs * units.fs, temperature_K=s.temperature_K, tdamp=s.taut_fs * units.fs
    )


def _mtk(cls_name: str):
    def build(atoms, s, rng):
        from ase.md import nose_hoover_chain

        cls = getattr(nose_hoover_chain, cls_name)
        return cls(
            atoms,
            s.timestep_fs * units.fs,
            temperature_K=s.temperature_K,
            pressure_au=s.pressure_GPa * units.GPa,
            tdamp=s.taut_fs * units.fs,
            pdamp=s.pdamp_fs * units.fs,
        )

    return build


ENSEMBLES: dict[str, EnsembleSpec] = {
    "nve": EnsembleSpec("NVE", "VelocityVerlet", _nve),
    "langevin": EnsembleSpec("NVT", "Langevin", _langevin),
    "bussi": EnsembleSpec("NVT", "Bussi", _bussi),
    "nose-hoover": EnsembleSpec("NVT", "NoseHooverChainNVT", _nose_hoover),
    "npt-iso": EnsembleSpec("NPT", "IsotropicMTKNPT", _mtk("IsotropicMTKNPT")),
    "npt": EnsembleSpec("NPT", "MTKNPT", _mtk("MTKNPT")),
}
_ALIASES = {spec.integrator.lower(): name for name, spec in ENSEMBLES.items()}


def resolve_ensemble(name: str) -> str:
    """The canonical ensemble name for ``name`` (a name above or an integrator class name)."""
    key = str(name).strip().lower()
    if key in ENSEMBLES:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    accepted = ", ".join(f"{n} ({s.integrator})" for n, s in ENSEMBLES.items())
    raise ValueError(f"unknown ensemble {name!r}; accepted: {accepted}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class MDSettings:
    """One MD setting, checked on construction.

    Attributes:
        ensemble: a name of :data:`ENSEMBLES` (or an integrator class name).
        timestep_fs: time step (fs).
        temperature_K: initial velocities and thermostat target (K).
        pressure_GPa: barostat target (GPa), NPT only.
        friction_per_fs: Langevin friction (1/fs).
        taut_fs: Bussi time constant and Nosé–Hoover ``tdamp`` (fs).
        pdamp_fs: MTK barostat ``pdamp`` (fs).
        seed: seeds the velocities and the stochastic thermostats.
    """

    ensemble: str = "nve"
    timestep_fs: float = 1.0
    temperature_K: float = 300.0
    pressure_GPa: float = 0.0
    friction_per_fs: float = 0.01
    taut_fs: float = 100.0
    pdamp_fs: float = 1000.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "ensemble", resolve_ensemble(self.ensemble))
        for name in ("timestep_fs", "friction_per_fs", "taut_fs", "pdamp_fs"):
            _positive(name, getattr(self, name))
        if not (
            isinstance(self.temperature_K, (int, float))
            and math.isfinite(self.temperature_K)
            and self.temperature_K >= 0
        ):
            raise ValueError(
                f"temperature_K must be a finite number >= 0 K, got {self.temperature_K!r}"
            )
        if self.kind != "NVE" and self.temperature_K == 0:
            raise ValueError(f"ensemble {self.ensemble!r} needs temperature_K > 0, got 0")
        if not (isinstance(self.pressure_GPa, (int, float)) and math.isfinite(self.pressure_GPa)):
            raise ValueError(f"pressure_GPa must be a finite number, got {self.pressure_GPa!r}")
        if not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def kind(self) -> str:
        """ "NVE", "NVT" or "NPT"."""
        return ENSEMBLES[self.ensemble].kind

    @property
    def integrator(self) -> str:
        """The ASE integrator class name."""
        return ENSEMBLES[self.ensemble].integrator

    def replace(self, **changes) -> MDSettings:
        return MDSettings(**{**asdict(self), **changes})

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": self.kind, "integrator": self.integrator}


def check_structure_for(settings: MDSettings, atoms: Atoms) -> None:
    """Raise ``ValueError`` if ``atoms`` cannot run in ``settings.ensemble`` (NPT needs a 3D
    cell)."""
    if settings.kind == "NPT" and not (atoms.pbc.all() and atoms.cell.rank == 3):
        raise ValueError(
            f"ensemble {settings.ensemble!r} ({settings.integrator}) needs a 3D-periodic cell, "
            f"but pbc is {atoms.pbc.tolist()}; use nve, langevin, bussi or nose-hoover"
        )


def initialize_velocities(atoms: Atoms, temperature_K: float, seed: int = 0) -> None:
    """Maxwell–Boltzmann momenta at ``temperature_K`` (K), zero total momentum, and zero angular
    momentum for a non-periodic system. Reproducible for a given ``seed``."""
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    from mlff.thermal import thermalize

    if temperature_K == 0:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    thermalize(atoms, temperature_K, rng=np.random.default_rng(seed))
    if len(atoms) > 1:
        Stationary(atoms)
        if not atoms.pbc.any():
            ZeroRotation(atoms)


def make_integrator(
    atoms: Atoms, settings: MDSettings, rng: np.random.Generator | None = None
) -> MolecularDynamics:
    """The ASE integrator for ``settings`` on ``atoms``. Set the velocities first: the
    Nosé–Hoover/MTK integrators copy positions and momenta when they are built."""
    check_structure_for(settings, atoms)
    rng = rng if rng is not None else np.random.default_rng(settings.seed + 1)
    return ENSEMBLES[settings.ensemble].build(atoms, settings, rng)


def conserved_energy(dyn: MolecularDynamics) -> tuple[str, Callable[[], float]] | None:
    """(label, function) for the quantity ``dyn`` conserves (eV), or ``None`` (Langevin):
    total energy for NVE, E − transferred energy for Bussi, the extended energy for the
    Nosé–Hoover/MTK integrators."""
    from ase.md.bussi import Bussi
    from ase.md.verlet import VelocityVerlet

    if hasattr(dyn, "get_conserved_energy"):
        return "extended energy", dyn.get_conserved_energy
    if isinstance(dyn, Bussi):
        return (
            "total energy - thermostat work",
            lambda: dyn.atoms.get_total_energy() - dyn.transferred_energy,
        )
    if type(dyn) is VelocityVerlet:
        return "total energy", dyn.atoms.get_total_energy
    return None
