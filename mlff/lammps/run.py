"""Run an exported student in the wheel's ``lmp`` (through ``mpiexec`` for several ranks) on
an ASE structure, and read back what LAMMPS computed in ASE's frame and units: the bridge the
tests and benchmarks use to compare ``pair_style mlff`` with mlff's own calculators.

LAMMPS wants a cell whose first vector lies along x and second in the xy plane; the structure
is written in that orientation (:class:`ase.calculators.lammps.Prism`) and forces and virials
are rotated back.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.lammps import Prism
from ase.io.lammpsdata import write_lammps_data

from mlff.lammps.build import build_plugin
from mlff.lammps.wheel import mpi_environment, mpi_executables

__all__ = ["LammpsResult", "run_lammps_single_point", "run_lammps_nve"]

#: LAMMPS's conversion of eV/Å³ to bar in metal units (``force->nktv2p``).
NKTV2P_METAL = 1.6021765e6


@dataclass
class LammpsResult:
    """One evaluation in LAMMPS, in ASE's frame: eV, eV/Å, eV (virials W = Σ x ⊗ f)."""

    energy: float
    energies: np.ndarray  # (n_atoms,) from compute pe/atom
    forces: np.ndarray  # (n_atoms, 3)
    virial: np.ndarray  # (3, 3) from compute pressure NULL virial
    atom_virials: np.ndarray  # (n_atoms, 3, 3) from compute stress/atom NULL virial
    volume: float  # Å³, LAMMPS's box
    log: str


def _elements_of(potential: Path) -> list[str]:
    with open(potential) as handle:
        for line in handle:
            words = line.split("#", 1)[0].split()
            if words[:1] == ["elements"]:
                return words[2:]
    raise ValueError(f"{potential} has no 'elements' line; is it an mlff potential file?")


def _setup(
    atoms: Atoms, potential: Path, plugin: Path, workdir: Path, velocities: bool = False
) -> tuple[list[str], Prism]:
    elements = _elements_of(potential)
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if unknown:
        raise ValueError(f"the structure has {unknown}, which {potential.name} lacks: {elements}")
    prism = Prism(np.array(atoms.cell), pbc=atoms.pbc)
    with open(workdir / "data.lmp", "w") as handle:
        write_lammps_data(
            handle,
            atoms,
            specorder=elements,
            prismobj=prism,
            masses=True,
            velocities=velocities,
            units="metal",
            atom_style="atomic",
        )
    boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    commands = [
        "units metal",
        "atom_style atomic",
        f"boundary {boundary}",
        "atom_modify map array",
        "read_data data.lmp",
        f"plugin load {plugin}",
        "pair_style mlff",
        f"pair_coeff * * {potential} {' '.join(elements)}",
        "neighbor 1.0 bin",
    ]
    return commands, prism


def _launch(commands: Sequence[str], workdir: Path, ranks: int, threads: int, timeout: float):
    mpiexec, lmp = mpi_executables()
    (workdir / "in.lmp").write_text("\n".join(commands) + "\n")
    command = [str(lmp), "-in", "in.lmp", "-screen", "none", "-log", "log.lammps", "-nocite"]
    if ranks > 1:
        command = [str(mpiexec), "-n", str(ranks), *command]
    proc = subprocess.run(
        command,
        cwd=workdir,
        env=mpi_environment(threads),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log_path = workdir / "log.lammps"
    log = log_path.read_text() if log_path.is_file() else ""
    if proc.returncode != 0:
        errors = [
            line for line in (log + proc.stdout + proc.stderr).splitlines() if "ERROR" in line
        ]
        detail = "\n".join(errors) if errors else (log + proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"LAMMPS failed (exit {proc.returncode}) in {workdir}:\n{detail}")
    return log


def _voigt_to_matrix(v: Sequence[float]) -> np.ndarray:
    """LAMMPS's (xx, yy, zz, xy, xz, yz) as a symmetric 3×3 matrix."""
    xx, yy, zz, xy, xz, yz = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def run_lammps_single_point(
    atoms: Atoms,
    potential: str | Path,
    *,
    plugin: str | Path | None = None,
    ranks: int = 1,
    threads: int = 1,
    timeout: float = 600.0,
) -> LammpsResult:
    """Energy, per-atom energies, forces and virials of ``atoms`` from ``pair_style mlff`` with
    ``potential`` (an exported ``.mlff`` file), in ``ranks`` MPI processes of ``threads``
    OpenMP threads each; ``plugin`` defaults to :func:`~mlff.lammps.build_plugin`'s."""
    potential = Path(potential).resolve()
    plugin = Path(plugin).resolve() if plugin is not None else build_plugin()
    with tempfile.TemporaryDirectory(prefix="mlff-lammps-") as tmp:
        workdir = Path(tmp)
        commands, prism = _setup(atoms, potential, plugin, workdir)
        commands += [
            "compute pe_atom all pe/atom",
            "compute s_atom all stress/atom NULL virial",
            "compute vir all pressure NULL virial",
            "thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6]",
            "dump out all custom 1 atoms.dump id fx fy fz c_pe_atom "
            + " ".join(f"c_s_atom[{k}]" for k in range(1, 7)),
            "dump_modify out format float %.17g sort id",
            "run 0",
            'print "MLFF_RESULT $(pe:%.17g) $(vol:%.17g) '
            + " ".join(f"$(c_vir[{k}]:%.17g)" for k in range(1, 7))
            + '"',
        ]
        log = _launch(commands, workdir, ranks, threads, timeout)
        found = re.findall(r"^MLFF_RESULT (.+)$", log, flags=re.MULTILINE)
        if not found:
            raise RuntimeError(f"LAMMPS printed no result; its log ends:\n{log[-2000:]}")
        values = [float(v) for v in found[-1].split()]
        energy, volume, pressure = values[0], values[1], values[2:8]
        table = _read_dump(workdir / "atoms.dump", len(atoms))
    virial = _voigt_to_matrix(pressure) * volume / NKTV2P_METAL
    atom_virials = np.array([_voigt_to_matrix(row) for row in table[:, 5:11]]) / NKTV2P_METAL
    return LammpsResult(
        energy=energy,
        energies=table[:, 4].copy(),
        forces=prism.vector_to_ase(table[:, 1:4]),
        virial=prism.tensor2_to_ase(virial),
        atom_virials=np.array([prism.tensor2_to_ase(-w) for w in atom_virials]),
        volume=volume,
        log=log,
    )


def _read_dump(path: Path, n_atoms: int) -> np.ndarray:
    lines = path.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("ITEM: ATOMS"))) + 1
    table = np.array([[float(v) for v in line.split()] for line in lines[start:]])
    if table.shape[0] != n_atoms:
        raise RuntimeError(f"the dump has {table.shape[0]} atoms, expected {n_atoms}")
    return table


def run_lammps_nve(
    atoms: Atoms,
    potential: str | Path,
    *,
    steps: int,
    timestep_fs: float,
    every: int = 10,
    plugin: str | Path | None = None,
    ranks: int = 1,
    threads: int = 1,
    timeout: float = 600.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity-Verlet NVE (``fix nve``) from ``atoms``' positions and velocities: the
    potential and the total energy (eV) every ``every`` steps, from step 0 to ``steps``.

    LAMMPS's and ASE's kinetic energies of the same velocities differ in the 8th digit (their
    unit constants do), so compare potential energies where digits matter."""
    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be positive, got {steps} and {every}")
    potential = Path(potential).resolve()
    plugin = Path(plugin).resolve() if plugin is not None else build_plugin()
    with tempfile.TemporaryDirectory(prefix="mlff-lammps-") as tmp:
        workdir = Path(tmp)
        commands, _ = _setup(atoms, potential, plugin, workdir, velocities=True)
        commands += [
            f"timestep {timestep_fs / 1000.0!r}",
            "fix nve all nve",
            f'fix out all print {every} "$(step) $(pe:%.17g) $(etotal:%.17g)" '
            "file energy.txt screen no",
            f"run {steps}",
        ]
        _launch(commands, workdir, ranks, threads, timeout)
        rows = [
            line.split()
            for line in (workdir / "energy.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
    table = np.array([[float(v) for v in row[1:3]] for row in rows])
    return table[:, 0], table[:, 1]
