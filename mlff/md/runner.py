"""One calculator's MD run, advanced step by step so that runs can be interleaved.

Each step is timed from one ``next()`` of ASE's ``irun`` generator to the next: the integrator
step plus the force call(s) it makes, as a user's script sees it. Everything recorded after a
step (energies, temperature, pressure, memory) happens outside that timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from mlff.md.ensembles import MDSettings, conserved_energy, make_integrator
from mlff.md.memory import cuda_allocated_bytes, rss_bytes

__all__ = ["MDRun", "MDSeries"]


@dataclass
class MDSeries:
    """Time series of one run. Per-step: ``latency_s`` (len = steps done). Per sample (every
    ``sample_interval`` steps, sample 0 = the start): ``step``, ``time_fs``, energies (eV,
    whole system), ``temperature_K``, ``volume_A3``, ``rss_bytes`` (process), ``rss_attributed``
    (bytes of RSS growth during this run's own steps, cumulative), ``cuda_bytes``. Pressure
    (GPa) at ``pressure_step``."""

    latency_s: list[float] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    time_fs: list[float] = field(default_factory=list)
    energy_potential: list[float] = field(default_factory=list)
    energy_kinetic: list[float] = field(default_factory=list)
    energy_conserved: list[float] = field(default_factory=list)
    temperature_K: list[float] = field(default_factory=list)
    volume_A3: list[float] = field(default_factory=list)
    rss_bytes: list[float] = field(default_factory=list)
    rss_attributed: list[float] = field(default_factory=list)
    cuda_bytes: list[float] = field(default_factory=list)
    pressure_step: list[int] = field(default_factory=list)
    pressure_GPa: list[float] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.__dict__.items()}


class MDRun:
    """MD of ``calc`` on a copy of ``atoms`` (velocities already set) under ``settings``.

    Args:
        steps: MD steps to run (>= 1).
        sample_interval: record energies, temperature, volume and memory every this many steps.
        pressure_interval: record the pressure every this many steps and at the start (0: never;
            3D-periodic cells and calculators with stress only). Free where the integrator needs
            stress anyway (NPT); otherwise an extra stress call, not timed.
        time_limit_s: stop after this much MD time (sum of step latencies).
        stop_on_nonfinite: stop (``stopped`` says why) when energy or positions turn NaN/inf.
        on_sample: called as ``on_sample(atoms, step)`` after each sample; a string it returns
            stops the run with that reason.
    """

    def __init__(
        self,
        atoms: Atoms,
        calc: BaseCalculator,
        settings: MDSettings,
        steps: int,
        sample_interval: int = 1,
        pressure_interval: int = 10,
        time_limit_s: float | None = None,
        stop_on_nonfinite: bool = True,
        on_sample: Callable[[Atoms, int], str | None] | None = None,
    ):
        self.atoms = atoms.copy()
        self.atoms.calc = calc
        self.settings = settings
        self.steps = int(steps)
        self.sample_interval = int(sample_interval)
        self.pressure_interval = int(pressure_interval)
        self.time_limit_s = time_limit_s
        self.stop_on_nonfinite = stop_on_nonfinite
        self.on_sample = on_sample
        self.series = MDSeries()
        self.stopped: str | None = None
        self.done_steps = 0
        self.first_call_s: float | None = None
        self.md_time_s = 0.0
        self.wall_s = 0.0
        self.dyn = make_integrator(self.atoms, settings)
        self.conserved = conserved_energy(self.dyn)
        self._can_stress = self.atoms.pbc.all() and "stress" in getattr(
            calc, "implemented_properties", ()
        )
        self._iter = None
        self._rss_ref: int | None = None
        self._attributed = 0.0
        self.rss_initial = rss_bytes()
        self.cuda_initial = cuda_allocated_bytes()

    @property
    def finished(self) -> bool:
        return self.stopped is not None or self.done_steps >= self.steps

    def advance(self, n: int) -> int:
        """Run up to ``n`` more steps; returns how many were run."""
        start_wall = time.perf_counter()
        self._rss_ref = rss_bytes()  # growth between our blocks belongs to someone else
        ran = 0
        try:
            if self._iter is None:
                self._iter = self.dyn.irun(self.steps)
                t0 = time.perf_counter()
                next(self._iter)  # the initial force call, before any step
                self.first_call_s = time.perf_counter() - t0
                self._sample()
                self._sample_pressure()
            while ran < n and not self.finished:
                t0 = time.perf_counter()
                next(self._iter)
                dt = time.perf_counter() - t0
                ran += 1
                self.done_steps += 1
                self.md_time_s += dt
                self.series.latency_s.append(dt)
                if self.done_steps % self.sample_interval == 0 or self.done_steps == self.steps:
                    self._sample()
                if self.pressure_interval and self.done_steps % self.pressure_interval == 0:
                    self._sample_pressure()
                if (
                    self.time_limit_s is not None
                    and self.md_time_s >= self.time_limit_s
                    and not self.finished
                ):
                    self.stopped = (
                        f"time limit of {self.time_limit_s:g} s reached "
                        f"after {self.done_steps} steps"
                    )
        except Exception as err:  # a model that fails mid-run is a result, not a crash
            self.stopped = f"error at step {self.done_steps}: {type(err).__name__}: {err}"
        self.wall_s += time.perf_counter() - start_wall
        return ran

    def _sample(self) -> None:
        atoms, s = self.atoms, self.series
        step = self.done_steps
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        s.step.append(step)
        s.time_fs.append(step * self.settings.timestep_fs)
        s.energy_potential.append(epot)
        s.energy_kinetic.append(ekin)
        s.energy_conserved.append(float(self.conserved[1]()) if self.conserved else np.nan)
        s.temperature_K.append(float(atoms.get_temperature()))
        s.volume_A3.append(float(atoms.get_volume()) if atoms.cell.rank == 3 else np.nan)
        rss = rss_bytes()
        if rss is not None and self._rss_ref is not None:
            self._attributed += rss - self._rss_ref
            self._rss_ref = rss
        s.rss_bytes.append(np.nan if rss is None else float(rss))
        s.rss_attributed.append(self._attributed)
        cuda = cuda_allocated_bytes()
        s.cuda_bytes.append(np.nan if cuda is None else float(cuda))
        if self.stop_on_nonfinite and not (
            np.isfinite(epot) and np.isfinite(atoms.positions).all()
        ):
            self.stopped = f"non-finite energy or positions at step {step}"
        elif self.on_sample is not None:
            self.stopped = self.on_sample(atoms, step) or None

    def _sample_pressure(self) -> None:
        """P = −tr(σ)/3 with the ideal-gas (kinetic) term, in GPa; 3D-periodic cells only."""
        if not (self._can_stress and self.pressure_interval) or self.stopped:
            return
        stress = self.atoms.get_stress(include_ideal_gas=True, voigt=True)
        self.series.pressure_step.append(self.done_steps)
        self.series.pressure_GPa.append(float(-stress[:3].mean() / units.GPa))
