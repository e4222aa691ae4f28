import pytest
from helpers import STRUCTURES

from mlff import OneBody, SiteCalculator


def test_onebody_energies_per_element():
    atoms = STRUCTURES["triclinic-sic"]()
    atoms.calc = SiteCalculator(OneBody({"Si": -1.5, "C": -3.0}))
    expected = [-1.5 if s == "Si" else -3.0 for s in atoms.get_chemical_symbols()]
    assert atoms.get_potential_energies().tolist() == expected
    assert not atoms.get_stress().any()


def test_onebody_bad_input():
    with pytest.raises(ValueError, match="mapping element"):
        OneBody({})
    with pytest.raises(ValueError, match="unknown element 'Qq'"):
        OneBody({"Qq": 1.0})
