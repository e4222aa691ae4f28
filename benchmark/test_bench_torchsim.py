"""Batched NVE MD of a student through torch-sim (``mlff.torchsim.MlffModel``) on the CPU:
16 systems of 64-atom Si, atoms·steps/s in ``extra_info``. The table over batch sizes, and the
comparison with the kernel path system by system, is ``benchmark/torchsim_throughput.py``."""

from __future__ import annotations

import pytest

pytest.importorskip("torch_sim")

from lammps_snap import lammps_unavailable_reason, sw_si_student  # noqa: E402
from torchsim_throughput import cells, torchsim_rate  # noqa: E402

pytestmark = pytest.mark.skipif(
    lammps_unavailable_reason() is not None, reason="the SW-fitted student needs LAMMPS"
)


def test_torchsim_nve_16_systems(benchmark):
    model = sw_si_student()
    systems = cells(16)
    rates = []
    benchmark.pedantic(
        lambda: rates.append(torchsim_rate(model, systems, 5, "cpu")), rounds=3, iterations=1
    )
    assert rates and min(rates) > 0
    benchmark.extra_info["atoms_steps_per_s"] = max(rates)
