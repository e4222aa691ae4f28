import numpy as np
import pytest
import torch
from ase import Atoms
from helpers import make_pair

from mlff import PairModel, SiteCalculator
from mlff.models import ZBLRepulsion


def _dimer(symbols: str, r: float) -> Atoms:
    return Atoms(symbols, positions=[[0, 0, 0], [r, 0, 0]])


def test_pair_energy_is_symmetric_in_elements():
    model = make_pair()
    calc = SiteCalculator(model)
    e_sic = _dimer("SiC", 2.0)
    e_csi = _dimer("CSi", 2.0)
    e_sic.calc = e_csi.calc = calc
    assert e_sic.get_potential_energy() == pytest.approx(e_csi.get_potential_energy(), abs=1e-12)
    # Each atom carries half the bond energy.
    np.testing.assert_allclose(e_sic.get_potential_energies(), e_sic.get_potential_energy() / 2)


def test_pair_goes_smoothly_to_zero_at_cutoff():
    model = make_pair(repulsion=False)
    atoms = _dimer("Si2", 1.0)
    atoms.calc = SiteCalculator(model)
    rc = model.cutoff
    values, forces = [], []
    for r in [rc - 2e-2, rc - 1e-2, rc - 1e-3, rc + 1e-3]:
        atoms.positions[1, 0] = r
        values.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces()[1, 0])
    assert values[-1] == 0.0 and forces[-1] == 0.0
    # Value ~ δ³ and force ~ δ² as the distance δ to the cutoff shrinks.
    assert abs(values[1]) < abs(values[0]) / 6 and abs(forces[1]) < abs(forces[0]) / 3
    assert abs(values[2]) < 1e-6 and abs(forces[2]) < 1e-4
    assert abs(values[0]) > 1e-8, "the test needs a pair potential that is non-zero near the cutoff"


def test_repulsive_prior_dominates_at_short_range_and_vanishes_at_bonds():
    bare = make_pair(repulsion=False)
    with_prior = make_pair(repulsion=True)
    for model in (bare, with_prior):
        model.set_linear_parameters(torch.zeros(model.length_basis(), dtype=torch.float64))
    atoms = _dimer("Si2", 0.8)
    atoms.calc = SiteCalculator(with_prior)
    assert atoms.get_potential_energy() > 50.0
    assert atoms.get_forces()[1, 0] > 0  # pushes the atoms apart
    atoms.positions[1, 0] = 2.0  # beyond 0.75 × (2 × 1.11 Å)
    assert atoms.get_potential_energy() == 0.0
    assert with_prior.length_basis() == bare.length_basis()


def test_zbl_matches_the_bare_coulomb_limit():
    zbl = ZBLRepulsion(["Si"], torch.tensor([[1.0]]), torch.tensor([[2.0]]))
    r = torch.tensor([1e-4], dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.long)
    coulomb = 14.399645 * 14 * 14 / r
    assert float(zbl(r, zero, zero) / coulomb) == pytest.approx(1.0, rel=1e-2)


def test_pair_layout_is_one_block_per_unordered_pair():
    model = PairModel(["H", "C", "Si"], n_max=5)
    assert model.pairs == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    assert model.length_basis() == 6 * 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        PairModel(["Si", "Xx"])
    with pytest.raises(ValueError, match="listed twice"):
        PairModel(["Si", "Si"])
    with pytest.raises(ValueError, match="cutoff must be"):
        PairModel(["Si"], cutoff=-1)
    with pytest.raises(ValueError, match="n >= 1"):
        PairModel(["Si"], n_max=0)


def test_fit_dimer_curve_reproduces_a_smooth_pair_potential():
    model = PairModel(["Si", "C"], cutoff=5.0, n_max=10, repulsion=True)
    r = np.linspace(1.8, 4.9, 120)
    target = 2.0 * ((1 - np.exp(-1.4 * (r - 2.3))) ** 2 - 1) * (1 - r / 5.0) ** 3
    misfit = model.fit_dimer_curve(("Si", "C"), r, target)
    assert misfit < 5e-3
    calc = SiteCalculator(model)
    for d, expected in zip(r[::17], target[::17], strict=True):
        atoms = _dimer("SiC", d)
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(expected, abs=2e-2)
    # Other pair blocks are untouched (zero).
    si2 = _dimer("Si2", 2.3)
    si2.calc = calc
    assert si2.get_potential_energy() == 0.0
    with pytest.raises(ValueError, match="0 < r < cutoff"):
        model.fit_dimer_curve(("Si", "C"), [1.0, 6.0], [0.0, 0.0])
