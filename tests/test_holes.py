"""The energy-hole scans find a hole where one is and none where the wall is sound."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff import StackedCalculator
from mlff.holes import HoleScan, hole_scans, holes_table
from mlff.models import PairModel


@pytest.fixture(scope="module")
def copper():
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)


def _attractive_core(sign: float) -> StackedCalculator:
    """V(r) = sign · x(r) f(r): x, the Agnesi coordinate, grows towards 1 as r → 0, so a
    negative sign pulls atoms together ever more strongly: a hole by construction."""
    pair = PairModel(["Cu"], cutoff=5.0, n_max=4)
    theta = torch.zeros(pair.length_basis(), dtype=torch.float64)
    theta[1] = sign
    pair.set_linear_parameters(theta)
    return StackedCalculator([pair])


def test_a_sound_wall_passes(copper):
    scans = hole_scans(EMT(), copper, start=0.8, points=20)
    assert [s.name for s in scans] == ["dimer Cu-Cu", "bulk Cu-Cu", "cluster Cu-Cu"]
    assert all(s.passed for s in scans), holes_table(scans)
    for s in scans:  # the wall rises, by electronvolts, all the way in
        assert s.distances[0] > s.distances[-1] == pytest.approx(0.5)
        assert s.energies[-1] - s.energies[0] > 1.0


def test_an_attractive_core_fails_every_scan(copper):
    scans = hole_scans(_attractive_core(-1.0), copper, start=0.8, points=20)
    assert not any(s.passed for s in scans), holes_table(scans)
    assert "**no**" in holes_table(scans)


def test_the_tolerance_decides(copper):
    (scan,) = hole_scans(_attractive_core(-1.0), copper, start=0.8, points=20, kinds=("dimer",))
    assert 0 < scan.worst_drop < 1.0
    loose = HoleScan(scan.kind, scan.pair, scan.distances, scan.energies, scan.worst_drop * 1.01)
    assert loose.passed
    assert scan.to_dict()["passed"] is False


def test_non_finite_energies_fail():
    scan = HoleScan("dimer", ("Cu", "Cu"), np.array([2.0, 1.0, 0.5]), np.array([0, 1, np.nan]), 1)
    assert not scan.passed


def test_bad_arguments_are_refused(copper):
    with pytest.raises(ValueError, match="unknown scan kind"):
        hole_scans(EMT(), copper, kinds=("trimer",))
    with pytest.raises(ValueError, match="r_min"):
        hole_scans(EMT(), copper, r_min=-1.0)
    with pytest.raises(ValueError, match="not above r_min"):
        hole_scans(EMT(), copper, start=0.1)
