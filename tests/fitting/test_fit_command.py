"""``mlff fit`` and ``mlff eval`` on files: a planted stack recovered through extxyz and an
ASE database with the user's label names, virial and stress labels alike, E0 from isolated
atoms, predictions written beside the labels, and bad input refused before anything is
written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.db import connect
from ase.io import read, write

from mlff import DistilledCalculator, SiteCalculator, StackedCalculator
from mlff.cli import main
from mlff.fitting import fit
from mlff.fitting.data import LabelKeys, read_dataset
from mlff.fitting.runs import FitConfig, fit_run
from mlff.models.default import default_stack
from mlff.testing import random_linear_parameters

ACE = {"n_max": 4, "l_max": 2, "max_degree": {1: 4, 2: 5}}
PAIR = {"n_max": 4, "repulsion": False}
E0 = {"Cu": -1.5, "Au": -2.5}


def _planted():
    model = default_stack(["Au", "Cu"], E0, cutoff=4.5, ace=ACE, pair=PAIR)
    probe = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(2)
    probe.symbols[::3] = "Au"
    probe.rattle(0.1, seed=1)
    random_linear_parameters(model, probe, energy_scale=0.3, seed=2)
    return model


def _labelled(model, n: int, seed: int, keys=("REF_energy", "REF_forces", "REF_stress")):
    """Alloy cells labelled by ``model``, labels under the user's names in info/arrays."""
    rng = np.random.default_rng(seed)
    calc = SiteCalculator(model)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.7 * rng.uniform(0.97, 1.03), cubic=True).repeat(2)
        atoms.symbols[rng.random(len(atoms)) < 0.4] = "Au"
        atoms.rattle(0.08, seed=int(rng.integers(2**31)))
        atoms.calc = calc
        energy, forces, stress = (
            atoms.get_potential_energy(),
            atoms.get_forces(),
            atoms.get_stress(),
        )
        atoms.calc = None
        atoms.info[keys[0]] = energy
        atoms.arrays[keys[1]] = forces
        atoms.info[keys[2]] = stress
        atoms.info["config_type"] = "strain" if k % 2 else "rattle"
        out.append(atoms)
    return out


def _quiet(message: str) -> None:
    pass


def _user_config(**extra) -> FitConfig:
    return FitConfig.from_mapping(
        {
            "energy_key": "REF_energy",
            "forces_key": "REF_forces",
            "stress_key": "REF_stress",
            "cutoff": 4.5,
            "size": "xs",  # laid under ACE's own options
            "ace": ACE,
            "pair": PAIR,
            "e0": E0,
            "solver": "qr",
            "ridge": 0.0,
            **extra,
        }
    )


def _predictions_agree(run, model, configs, rtol: float) -> None:
    fitted = DistilledCalculator(checkpoint_path=run)
    planted = SiteCalculator(model)
    for atoms in configs:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = fitted, planted
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < rtol * len(atoms)
        assert np.abs(a.get_forces() - b.get_forces()).max() < rtol * np.abs(b.get_forces()).max()


@pytest.mark.parametrize("fmt", ["extxyz", "db"])
def test_a_planted_stack_is_fitted_back_through_files(fmt, tmp_path):
    model = _planted()
    train, test = _labelled(model, 16, seed=0), _labelled(model, 3, seed=1)
    if fmt == "extxyz":
        write(tmp_path / "train.extxyz", train)
        write(tmp_path / "test.extxyz", test)
        train_files, test_files = [str(tmp_path / "train.extxyz")], [str(tmp_path / "test.extxyz")]
    else:
        with connect(tmp_path / "train.db") as db:
            for atoms in train:
                info = {k: v for k, v in atoms.info.items() if k != "REF_stress"}
                db.write(
                    atoms,
                    key_value_pairs=info,
                    data={
                        "REF_forces": atoms.arrays["REF_forces"],
                        "REF_stress": atoms.info["REF_stress"],
                    },
                )
        write(tmp_path / "test.extxyz", test)
        train_files, test_files = [str(tmp_path / "train.db")], [str(tmp_path / "test.extxyz")]
    run = tmp_path / "run"
    report = fit_run(train_files, run, _user_config(), test=test_files, progress=False, log=_quiet)
    _predictions_agree(run, model, test, rtol=1e-8)
    assert report["errors"]["test"]["rows"]["all"]["forces"]["rmse"] < 1e-5  # meV/Å
    assert report["configurations"]["train"] == {"rattle": 8, "strain": 8}
    for name in ("student.json", "report.json", "report.md", "parity_train.png", "parity_test.png"):
        assert (run / name).is_file(), name
    assert set(json.loads((run / "report.json").read_text())["seconds"]) >= {
        "read",
        "assemble",
        "solve",
        "errors",
    }


def test_virial_and_stress_labels_give_the_same_fit(tmp_path):
    model = _planted()
    configs = _labelled(model, 10, seed=3)
    write(tmp_path / "stress.extxyz", configs)
    for atoms in configs:
        stress = atoms.info.pop("REF_stress")
        xx, yy, zz, yz, xz, xy = stress
        matrix = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        atoms.info["REF_virial"] = (-matrix * atoms.get_volume()).reshape(-1)  # W = -σV, eV
    write(tmp_path / "virial.extxyz", configs)
    common = dict(e0=E0, solver="qr", ridge=1e-6)  # a unique θ: the data leave some directions open
    fit_run(
        [str(tmp_path / "stress.extxyz")],
        tmp_path / "a",
        _user_config(**common),
        progress=False,
        log=_quiet,
    )
    with_virial = _user_config(**common)
    with_virial.stress_key, with_virial.virial_key = "stress", "REF_virial"
    fit_run(
        [str(tmp_path / "virial.extxyz")],
        tmp_path / "b",
        with_virial,
        progress=False,
        log=_quiet,
    )
    # the two files carry the labels to extxyz's 8 decimals, so the fits agree to about that
    a = DistilledCalculator(checkpoint_path=tmp_path / "a")
    b = DistilledCalculator(checkpoint_path=tmp_path / "b")
    for atoms in configs:
        one, two = atoms.copy(), atoms.copy()
        one.calc, two.calc = a, b
        assert abs(one.get_potential_energy() - two.get_potential_energy()) < 1e-7 * len(atoms)
        assert np.abs(one.get_forces() - two.get_forces()).max() < 1e-6
        assert np.abs(one.get_stress() - two.get_stress()).max() < 1e-8  # eV/Å³


def test_e0_comes_from_isolated_atoms(tmp_path):
    model = _planted()
    configs = _labelled(model, 8, seed=4)
    for symbol, energy in (("Cu", -1.25), ("Au", -2.75)):
        single = bulk(symbol, "fcc", a=4.0)[:1]
        single.center(vacuum=5.0)
        single.pbc = False
        single.info.update({"REF_energy": energy, "config_type": "IsolatedAtom"})
        single.arrays["REF_forces"] = np.zeros((1, 3))
        configs.append(single)
    write(tmp_path / "data.extxyz", configs)
    config = _user_config(e0="auto", solver="blr")
    report = fit_run(
        [str(tmp_path / "data.extxyz")],
        tmp_path / "run",
        config,
        progress=False,
        log=_quiet,
    )
    assert report["e0"]["values"] == {"Au": -2.75, "Cu": -1.25}
    assert report["e0"]["source"] == "IsolatedAtom configurations"
    assert "IsolatedAtom" not in report["configurations"]["train"]
    calc = DistilledCalculator(checkpoint_path=tmp_path / "run", uncertainty=True)
    atoms = configs[0].copy()
    assert calc.get_property("energy_std", atoms) > 0
    assert calc.get_property("forces_std", atoms).shape == (len(atoms),)  # eV/Å per atom


def test_eval_writes_predictions_beside_the_labels(tmp_path, capsys):
    model = _planted()
    write(tmp_path / "train.extxyz", _labelled(model, 12, seed=5))
    fit_run(
        [str(tmp_path / "train.extxyz")],
        tmp_path / "run",
        _user_config(),
        progress=False,
        log=_quiet,
    )
    data = _labelled(model, 4, seed=6)
    write(tmp_path / "data.extxyz", data)
    out = tmp_path / "preds.extxyz"
    code = main(
        [
            "eval",
            str(tmp_path / "run"),
            str(tmp_path / "data.extxyz"),
            "--out",
            str(out),
            "--energy-key",
            "REF_energy",
            "--forces-key",
            "REF_forces",
            "--stress-key",
            "REF_stress",
        ]
    )
    assert code == 0
    frames = read(out, ":")
    assert len(frames) == 4
    for frame, atoms in zip(frames, data, strict=True):
        np.testing.assert_allclose(frame.info["MLFF_energy"], atoms.info["REF_energy"], atol=1e-6)
        np.testing.assert_allclose(
            frame.arrays["MLFF_forces"], atoms.arrays["REF_forces"], atol=1e-6
        )
        assert frame.info["MLFF_stress"].shape == (6,)
        # the labels stay beside the predictions (extxyz keeps 8 decimals of arrays)
        np.testing.assert_allclose(
            frame.arrays["REF_forces"], atoms.arrays["REF_forces"], atol=1e-8
        )
    errors = json.loads((tmp_path / "preds.errors.json").read_text())
    assert errors["rows"]["all"]["forces"]["rmse"] < 1e-3
    assert (tmp_path / "preds.parity.png").is_file()
    assert "config_type" in capsys.readouterr().out


def test_fit_takes_a_calculator_as_well_as_its_stack():
    model = _planted()
    data = [_to_calc_labels(a) for a in _labelled(model, 6, seed=7)]
    fresh = default_stack(["Au", "Cu"], E0, cutoff=4.5, ace=ACE, pair=PAIR)
    result = fit(StackedCalculator(list(fresh.parts)), data)
    assert result.errors["train"].rmse("forces") < 1e-3


def _to_calc_labels(atoms):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(
        atoms,
        energy=atoms.info.pop("REF_energy"),
        forces=atoms.arrays.pop("REF_forces"),
        stress=atoms.info.pop("REF_stress"),
    )
    return atoms


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error, and nothing written to the run directory


def _refused(tmp_path, files, config, match):
    run = tmp_path / "run"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        fit_run(files, run, config, progress=False, log=_quiet)
    assert not run.exists()


def test_a_missing_label_key_is_named_with_the_keys_the_data_have(tmp_path):
    write(tmp_path / "d.extxyz", _labelled(_planted(), 2, seed=8))
    config = _user_config()
    config.energy_key = "DFT_energy"
    _refused(tmp_path, [str(tmp_path / "d.extxyz")], config, r"energy key 'DFT_energy'.*REF_energy")


def test_nan_labels_are_named_by_file_and_index(tmp_path):
    configs = _labelled(_planted(), 3, seed=9)
    configs[2].arrays["REF_forces"][1, 0] = np.nan
    write(tmp_path / "d.extxyz", configs)
    _refused(
        tmp_path,
        [str(tmp_path / "d.extxyz")],
        _user_config(),
        r"d.extxyz configuration 2: the forces label contains NaN",
    )


def test_e0_of_elements_absent_from_the_data_is_refused(tmp_path):
    configs = _labelled(_planted(), 3, seed=10)
    for atoms in configs:
        atoms.symbols[:] = "Cu"
    write(tmp_path / "d.extxyz", configs)
    _refused(tmp_path, [str(tmp_path / "d.extxyz")], _user_config(), r"not in the data \['Au'\]")


def test_an_empty_file_and_an_unmatched_glob_are_refused(tmp_path):
    (tmp_path / "empty.extxyz").write_text("")
    _refused(tmp_path, [str(tmp_path / "empty.extxyz")], _user_config(), "empty.extxyz")
    _refused(tmp_path, [str(tmp_path / "nothing*.extxyz")], _user_config(), "no file matches")


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"ace": {"n_maxx": 4}}, r"ace\.n_maxx; accepted in ace: inner, l_max"),
        ({"pair": {"repulsion": True, "cut": 1}}, r"pair\.cut"),
        ({"weights": {"energy": 1.0, "force": 1.0}}, r"weights\.force"),
        ({"solvr": "qr"}, r"unknown setting\(s\) solvr"),
        ({"e0": "guess"}, r"e0 = 'guess'"),
    ],
)
def test_config_errors_are_named_before_any_work(settings, match):
    with pytest.raises(ValueError, match=match):
        FitConfig.from_mapping(settings)


def test_print_config_prints_every_default_as_toml(capsys):
    import tomllib

    assert main(["fit", "--print-config"]) == 0
    fit_settings = tomllib.loads(capsys.readouterr().out)
    expected = FitConfig().to_dict()
    expected.pop("virial_key")
    assert fit_settings == expected
    assert main(["distill", "--print-config"]) == 0
    distill_settings = tomllib.loads(capsys.readouterr().out)
    assert distill_settings["budget"] == 500 and distill_settings["pair"]["n_max"] == 8


def test_read_dataset_reads_emt_labels_under_ase_names(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    atoms.get_forces()
    atoms.get_stress()
    write(tmp_path / "emt.extxyz", [atoms])
    (config,) = read_dataset(str(tmp_path / "*.extxyz"), LabelKeys())
    np.testing.assert_allclose(config.get_forces(), atoms.get_forces())
    np.testing.assert_allclose(config.get_stress(), atoms.get_stress())


# ---------------------------------------------------------------------------------------------
# --size auto


def _emt_cu(n: int, seed: int):
    """EMT-labelled Cu cells: strained, rattled, with a vacancy."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * rng.uniform(0.97, 1.03), cubic=True).repeat(2)
        if k % 3 == 2:
            del atoms[int(rng.integers(len(atoms)))]
        atoms.rattle(rng.uniform(0.02, 0.15), seed=int(rng.integers(2**31)))
        atoms.calc = EMT()
        labels = dict(
            energy=atoms.get_potential_energy(),
            forces=atoms.get_forces(),
            stress=atoms.get_stress(),
        )
        atoms.calc = SinglePointCalculator(atoms, **labels)
        atoms.info["config_type"] = "cu"
        out.append(atoms)
    return out


def _auto(tmp_path, configs, name: str, **settings) -> dict:
    write(tmp_path / f"{name}.extxyz", configs)
    config = FitConfig.from_mapping({"max_parameters": 420, **settings})
    return fit_run(
        [str(tmp_path / f"{name}.extxyz")], tmp_path / name, config, progress=False, log=_quiet
    )


def test_size_auto_takes_a_smaller_basis_on_little_data_and_a_larger_on_more(tmp_path):
    few = _auto(tmp_path, _emt_cu(2, seed=0), "few")
    many = _auto(tmp_path, _emt_cu(40, seed=1), "many")
    order = ["xs", "s", "m"]
    assert [c["name"] for c in few["size"]["candidates"]] == order  # P <= 420: up to m
    assert order.index(few["size"]["chosen"]) < order.index(many["size"]["chosen"])
    chosen = max(many["size"]["candidates"], key=lambda c: c["log_evidence"])
    assert chosen["name"] == many["size"]["chosen"]
    assert (tmp_path / "many" / "size_curve.png").is_file()


def test_size_auto_finds_the_size_the_data_were_made_with(tmp_path):
    """Data planted by an s-sized stack (with a little label noise) choose s over xs and m;
    data planted by an xs-sized one choose xs."""
    from mlff.fitting.size import size_options

    for size in ("xs", "s"):
        model = default_stack(["Cu"], {"Cu": -1.0}, 5.0, size_options(size, {}), PAIR)
        probe = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        probe.rattle(0.1, seed=3)
        random_linear_parameters(model, probe, energy_scale=0.3, seed=4)
        configs = _emt_cu(24, seed=5)
        rng = np.random.default_rng(6)
        calc = SiteCalculator(model)
        labelled = []
        for atoms in configs:
            atoms = atoms.copy()
            atoms.calc = calc
            forces = atoms.get_forces() + rng.normal(0, 1e-3, (len(atoms), 3))
            energy = atoms.get_potential_energy() + rng.normal(0, 1e-4 * len(atoms))
            atoms.calc = None
            atoms.info["REF_energy"], atoms.arrays["REF_forces"] = energy, forces
            labelled.append(atoms)
        report = _auto(
            tmp_path,
            labelled,
            f"planted-{size}",
            energy_key="REF_energy",
            forces_key="REF_forces",
            pair=PAIR,
            e0={"Cu": -1.0},
        )
        assert report["size"]["chosen"] == size, report["size"]


def test_size_settings_are_checked():
    with pytest.raises(ValueError, match="size = 'huge'"):
        FitConfig.from_mapping({"size": "huge"})
    with pytest.raises(ValueError, match=r"chooses ace.n_max.*ace.n_max"):
        FitConfig.from_mapping({"ace": {"n_max": 6}})
    with pytest.raises(ValueError, match="needs solver = 'blr'"):
        FitConfig.from_mapping({"solver": "qr"})
    assert FitConfig.from_mapping({"size": "s", "ace": {"n_max": 6}}).size == "s"
