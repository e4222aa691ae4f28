import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError

from mlff import ACEModel, OneBody, PairModel, SiteCalculator, Stack
from mlff.fitting import BLR, QR, ErrorTable, estimate_e0, fit


def _cu_stack(e0: float = 0.0) -> Stack:
    return Stack(
        [
            OneBody({"Cu": e0}),
            PairModel(["Cu"], cutoff=5.0, n_max=8, repulsion=True),
            ACEModel(["Cu"], cutoff=5.0, n_max=8, max_degree={1: 8, 2: 12, 3: 11}),
        ]
    )


@pytest.fixture(scope="module")
def fitted(emt_train, emt_test):
    model = _cu_stack(estimate_e0(emt_train)["Cu"])
    return fit(model, emt_train, solver=BLR(), prior="smoothness", test=emt_test)


def test_fit_to_emt_copper_meets_accuracy_on_held_out_data(fitted):
    test = fitted.errors["test"]
    print(fitted)
    assert test.rmse("energy") <= 5.0  # meV/atom
    assert test.rmse("forces") <= 60.0  # meV/Å
    for ctype in ("strain", "rattle", "vacancy", "slab"):
        assert test.rmse("forces", ctype) <= 60.0
    # The fit is not trivially perfect or trivially bad: errors are finite and non-zero.
    assert 0 < fitted.errors["train"].rmse("forces") < test.rmse("forces") * 5


def test_committee_spread_grows_out_of_domain(fitted):
    calc = fitted.calculator(committee_size=16, seed=0)
    in_domain = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    in_domain.rattle(0.05, seed=11)
    compressed = in_domain.copy()
    compressed.set_cell(in_domain.cell * 0.85, scale_atoms=True)
    spreads = {}
    for name, atoms in (("in", in_domain), ("out", compressed)):
        atoms.calc = calc
        spreads[name] = (
            calc.get_property("energy_std", atoms),
            calc.get_property("forces_std", atoms),
        )
    assert spreads["in"][1].shape == (len(in_domain),)
    assert spreads["out"][0] > 3 * spreads["in"][0]
    assert spreads["out"][1].mean() > 3 * spreads["in"][1].mean()


def test_committee_members_are_k_dot_products_of_one_basis(fitted):
    """energy_std equals the spread of K separate model evaluations."""
    committee = fitted.committee(size=5, seed=3)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=2)
    calc = SiteCalculator(fitted.model, committee=committee)
    std = calc.get_property("energy_std", atoms)
    theta = fitted.model.get_linear_parameters()
    energies = []
    model = _cu_stack(fitted.model.parts[0].reference_energies()["Cu"])
    for member in committee:
        model.set_linear_parameters(member)
        probe = atoms.copy()
        probe.calc = SiteCalculator(model)
        energies.append(probe.get_potential_energy())
    assert std == pytest.approx(np.std(energies), rel=1e-8)
    assert np.allclose(fitted.model.get_linear_parameters(), theta)


def test_std_without_committee_is_a_clear_error(fitted):
    atoms = bulk("Cu", "fcc", a=3.61)
    calc = SiteCalculator(fitted.model)
    with pytest.raises(PropertyNotImplementedError, match="need a committee"):
        calc.get_property("forces_std", atoms)
    with pytest.raises(ValueError, match="committee must have shape"):
        SiteCalculator(fitted.model, committee=np.zeros((3, 5)))


def test_error_table_prints_and_round_trips_json(fitted):
    table = fitted.errors["test"]
    text = str(table)
    assert "meV/atom" in text and "vacancy" in text and text.splitlines()[-1].startswith("all")
    again = ErrorTable.from_dict(json.loads(table.to_json()))
    assert again.rows == table.rows
    assert table.rows["all"]["configs"]["count"] == 16


def test_qr_fit_with_ridge_also_reaches_accuracy(emt_train, emt_test):
    result = fit(_cu_stack(), emt_train, solver=QR(lambda_=1e-8), test=emt_test, n_workers=1)
    assert result.errors["test"].rmse("energy") <= 5.0
    assert result.errors["test"].rmse("forces") <= 60.0


def test_estimate_e0_recovers_per_element_levels():
    from ase import Atoms

    data = []
    for n_si, n_c in [(2, 0), (1, 3), (4, 4)]:
        atoms = Atoms(
            "Si" * n_si + "C" * n_c, positions=np.arange(3 * (n_si + n_c)).reshape(-1, 3) * 3.0
        )
        atoms.info["energy"] = -1.5 * n_si - 3.25 * n_c
        data.append(atoms)
    e0 = estimate_e0(data)
    assert e0 == pytest.approx({"C": -3.25, "Si": -1.5})
    with pytest.raises(ValueError, match="no labelled configuration contains O"):
        estimate_e0(data, elements=["Si", "C", "O"])
