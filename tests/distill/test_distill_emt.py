"""End to end: distil EMT copper through the CLI, then drive ASE MD with the student."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from mlff import DistilledCalculator, SiteCalculator
from mlff.cli import main
from mlff.distill import DistillConfig, LabelStore

CONFIG = """
teacher = "emt"
structure = ["Cu-fcc", "SLAB"]
temperature = "300:2000"
pressure = "0:5"
target_atoms = 32
budget = 400
rounds = 2
per_round = 12
temperature_levels = 2
md_steps = 60
md_interval = 10
survival_steps = 300
liquid_steps = 60
liquid_equilibration = 20
liquid_interval = 5
timing_atoms = 32
timing_steps = 3
committee_size = 8
round_candidates = {strain = 4, cluster = 2}
validation = {rattle = 2, vacancy = 1, strain = 1}
validation_md = {"900" = 2}
validation_md_steps = 20
physics_settings = {vacancy_atoms = 32, phonon_supercell_atoms = 32, eos_points = 5}
ace = {n_max = 6, max_degree = {"1" = 6, "2" = 9, "3" = 9}}

[initial]
rattle = 6
strain = 4
vacancy = 2
slab = 2
compressed = 3
cluster = 3
packing = 3
interstitial = 1
"""


def _slab_file(folder) -> str:
    """A Cu(100) slab with vacuum, written as a file seed."""
    from ase.build import fcc100
    from ase.io import write

    path = folder / "cu_slab.extxyz"
    write(path, fcc100("Cu", size=(2, 2, 4), vacuum=6.0, periodic=True))
    return str(path)


def _small(folder) -> dict:
    import tomllib

    return tomllib.loads(CONFIG.replace("SLAB", _slab_file(folder)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("emt-run")
    config = out / "distill.toml"
    config.write_text(CONFIG.replace("SLAB", _slab_file(out)))
    assert main(["distill", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def test_run_writes_checkpoint_store_and_report(run_dir):
    for name in (
        "student.json",
        "labels.db",
        "validation.db",
        "report.json",
        "report.md",
        "parity.png",
        "learning_curve.png",
    ):
        assert (run_dir / name).is_file(), name
    assert len(list(run_dir.glob("student.committee.*.safetensors"))) == 1
    assert len(list(run_dir.glob("student.*.safetensors"))) == 2  # the weights and the committee
    report = json.loads((run_dir / "report.json").read_text())
    calls = report["teacher_calls"]
    assert report["teacher"] == "emt" and calls["total"] <= 400
    assert calls["total"] == calls["training"] + calls["validation"] + calls["physics"]
    assert calls["training"] == report["labels"] == len(LabelStore(run_dir / "labels.db", "emt"))
    assert calls["physics"] > 0 and calls["validation"] > 0
    assert report["structure"][0] == "Cu-fcc" and report["structure"][1].endswith("cu_slab.extxyz")
    assert report["elements"] == ["Cu"]
    assert len(report["learning_curve"]) >= 2
    assert report["speed"]["teacher_s_per_step"] > 0 and report["speed"]["student_s_per_step"] > 0
    test = report["errors"]["test"]["rows"]["all"]
    assert test["energy"]["rmse"] < 5.0  # meV/atom against the teacher, held out
    assert test["forces"]["rmse"] < 60.0  # meV/Å
    assert "Speed-up" in (run_dir / "report.md").read_text()


def test_report_judges_the_student_against_the_teacher(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assessment = report["assessment"]
    assert set(assessment["physics"]) == {"Cu-fcc"}  # the slab seed has no bulk physics
    for seed, physics in assessment["physics"].items():
        rows = {row["property"]: row for row in physics["comparison"]["rows"]}
        assert {"a0", "B0", "C11", "C12", "C44", "vacancy", "gr_l1"} <= set(rows), seed
        # A student fitted to its teacher's labels gets the lattice right to a fraction of a
        # percent: the EOS is what the strain and compressed rows teach.
        assert abs(rows["a0"]["error"]) < 0.01, rows["a0"]
    # Every seed is scanned for holes and run at both ends of the range and under pressure.
    assert all(scan["passed"] for scans in assessment["holes"].values() for scan in scans)
    for runs in assessment["survival"].values():
        assert set(runs) == {"top", "bottom", "pressure"}
        assert all(run["survived"] and run["closest_pair_A"] > 1.5 for run in runs.values())
    text = (run_dir / "report.md").read_text()
    assert "teacher vs student" in text and "Energy holes" in text and "MD survival" in text
    assert (run_dir / "physics" / "Cu-fcc").is_dir()


def test_rerun_resumes_without_relabelling(run_dir):
    before = len(LabelStore(run_dir / "labels.db", teacher="emt"))
    config = run_dir / "distill.toml"
    calls = json.loads((run_dir / "report.json").read_text())["teacher_calls"]
    config.write_text(
        CONFIG.replace("SLAB", _slab_file(run_dir)).replace(
            "budget = 400", f"budget = {calls['total']}"
        )
    )
    assert main(["distill", "--config", str(config), "--out", str(run_dir), "--quiet"]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["teacher_calls"]["this_run"] == 0
    assert report["teacher_calls"]["physics"] == calls["physics"]  # kept, not paid again
    assert len(LabelStore(run_dir / "labels.db", teacher="emt")) == before


def test_info_command(run_dir, capsys):
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "teacher: emt" in out and "ACEModel" in out and "meV/atom" in out


def test_distilled_calculator_drives_ase_md(run_dir, monkeypatch):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.02, seed=1)
    atoms.calc = DistilledCalculator(checkpoint_path=run_dir)  # the one changed line
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    e0 = atoms.get_total_energy()
    dyn.run(50)
    assert np.isfinite(atoms.positions).all()
    assert abs(atoms.get_total_energy() - e0) / len(atoms) < 1e-3
    monkeypatch.setenv("MLFF_MODELS_DIR", str(run_dir.parent))
    named = DistilledCalculator(model=run_dir.name)
    assert named.metadata["teacher"] == "emt"
    with pytest.raises(FileNotFoundError, match="no student named 'nope'"):
        DistilledCalculator(model="nope")


def test_calculator_teacher_is_stored_under_its_own_name(tmp_path):
    from ase.calculators.emt import EMT

    from mlff.distill.loop import DistillConfig, distill

    class MyEMT(EMT):
        pass

    config = DistillConfig.from_mapping(
        {
            **_small(tmp_path),
            "out": str(tmp_path),
            "rounds": 0,
            "physics": False,
            "survival_steps": 20,
        }
    )
    report = distill(config, teacher=MyEMT(), progress=False, log=lambda *a: None)
    assert report["teacher"] == "MyEMT"
    assert len(LabelStore(tmp_path / "labels.db", teacher="MyEMT")) > 0
    assert len(LabelStore(tmp_path / "labels.db", teacher="emt")) == 0


def test_bad_settings_are_refused(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('teacher = "emt"\nbudgett = 10\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlff.cli",
            "distill",
            "--config",
            str(config),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "unknown setting(s) budgett" in done.stderr
    from mlff.distill.loop import DistillConfig

    with pytest.raises(ValueError, match="unknown generator\\(s\\) vacancies in validation"):
        DistillConfig.from_mapping({"validation": {"vacancies": 2}})
    with pytest.raises(ValueError, match="patience"):
        DistillConfig.from_mapping({"patience": 0})
    with pytest.raises(ValueError, match="config_type_weights = 0.5; accepted a table"):
        DistillConfig.from_mapping({"config_type_weights": 0.5})
    # a run's weights are laid over the defaults: naming one type keeps the core rows light
    weights = DistillConfig.from_mapping({"config_type_weights": {"cluster": 1.0}})
    assert weights.config_type_weights["cluster"] == 1.0
    assert weights.config_type_weights["core"]["forces"] == 0.02
    with pytest.raises(ValueError, match="cannot do element"):
        from mlff.distill.loop import DistillConfig, distill

        distill(
            DistillConfig(teacher="emt", structure=["Si-diamond"], out=str(tmp_path / "si")),
            progress=False,
        )


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            {"cutoff": 25.0},
            r"student.parts\[1\].cutoff = 25.0; accepted numbers greater than 0 and at most 20",
        ),
        ({"ace": {"l_max": 9}}, r"student.parts\[2\].l_max = 9; accepted integers 0 to 8"),
    ],
)
def test_a_student_beyond_the_checkpoint_bounds_is_refused_before_any_teacher_call(
    tmp_path, setting, message
):
    """save_model refuses such a student; the run must say so before labelling, not after."""
    from ase.calculators.emt import EMT

    from mlff.distill.loop import DistillConfig, distill

    class CountingEMT(EMT):
        calls = 0

        def calculate(self, *args, **kwargs):
            CountingEMT.calls += 1
            super().calculate(*args, **kwargs)

    config = DistillConfig.from_mapping(
        {**_small(tmp_path), **setting, "out": str(tmp_path), "rounds": 0}
    )
    with pytest.raises(ValueError, match=message):
        distill(config, teacher=CountingEMT(), progress=False, log=lambda *a: None)
    assert CountingEMT.calls == 0 and not (tmp_path / "student.json").exists()


KILLED = """
teacher = "emt"
structure = ["Cu-fcc", "Ni-fcc"]
temperature = "300:1500"
target_atoms = 16
budget = 80
rounds = 1
per_round = 6
temperature_levels = 2
md_steps = 40
md_interval = 10
physics = false
survival_steps = 40
timing_atoms = 16
timing_steps = 2
committee_size = 4
initial = {rattle = 10, strain = 6, vacancy = 2, cluster = 2, packing = 2}
round_candidates = {strain = 2}
validation = {rattle = 2}
validation_md = {}
ace = {n_max = 4, max_degree = {"1" = 4, "2" = 6}}
"""


def _rows(path) -> int:
    """Rows in an ASE SQLite db, read-only: opening it as a store while the writer is creating
    it would race the writer's schema."""
    import sqlite3

    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return int(db.execute("select count(*) from systems").fetchone()[0])
    except sqlite3.OperationalError:  # no schema yet, or locked for a write
        return 0


def test_a_killed_multi_seed_multi_element_run_resumes_without_duplicates(tmp_path):
    """SIGKILL in the middle of labelling two seeds of two elements, then resume: nothing is
    labelled twice, the budget holds, and the report counts every label once."""
    import signal
    import time

    config = tmp_path / "killed.toml"
    config.write_text(KILLED)
    command = [sys.executable, "-m", "mlff.cli", "distill", "--config", str(config)]
    command += ["--out", str(tmp_path), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if _rows(tmp_path / "labels.db") >= 8:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = len(LabelStore(tmp_path / "labels.db", "emt"))
    assert 8 <= killed_at < 80 and not (tmp_path / "report.json").exists()
    assert main(["distill", "--config", str(config), "--out", str(tmp_path), "--quiet"]) == 0
    store = LabelStore(tmp_path / "labels.db", "emt")
    hashes = [row.hash for row in store.db.select(teacher="emt")]
    assert len(hashes) == len(set(hashes)) == len(store)
    symbols = {s for atoms in store.configurations() for s in atoms.get_chemical_symbols()}
    assert symbols == {"Cu", "Ni"}
    report = json.loads((tmp_path / "report.json").read_text())
    calls = report["teacher_calls"]
    assert calls["training"] == len(store) and calls["total"] <= 80 and calls["physics"] == 0
    assert calls["this_run"] == len(store) - killed_at


def test_compare_command_runs_the_checks_on_any_student(run_dir, tmp_path, capsys):
    """`mlff compare` recomputes the teacher's side (nothing is read from the run) and judges
    the student on the seeds it names."""
    out = tmp_path / "compare"
    code = main(
        ["compare", str(run_dir), "--teacher", "emt", "--structure", "Cu-fcc"]
        + ["--temperature", "300:1500", "--pressure", "0:2", "--steps", "200", "--out", str(out)]
    )
    result = json.loads((out / "compare.json").read_text())
    assert code == (0 if all(result["passed"].values()) else 1)
    assert set(result["physics"]) == {"Cu-fcc"} and result["teacher_calls"]["physics"] > 0
    runs = result["survival"]["Cu-fcc"]
    assert runs["top"]["temperature_K"] == 1500 and runs["pressure"]["pressure_GPa"] == 2
    assert "teacher vs student" in (out / "compare.md").read_text()
    assert "Energy holes" in capsys.readouterr().out


def test_holes_found_in_a_student_become_labelling_candidates(run_dir):
    """An attractive core has holes in every scan: the loop's hole rows are the scan
    structures around each, never closer than the trusted floor; the distilled student has none."""
    import torch

    from mlff.distill.loop import HOLE_LABEL_MIN, _hole_candidates, domain_seeds
    from mlff.io import load_model
    from mlff.models import PairModel
    from mlff.models.radial import default_r0

    seeds = domain_seeds(DistillConfig(structure=["Cu-fcc"], target_atoms=32))
    pair = PairModel(["Cu"], cutoff=5.0, n_max=4)
    theta = torch.zeros(pair.length_basis(), dtype=torch.float64)
    theta[1] = -1.0  # V = -x(r) f(r): ever more attractive inward
    pair.set_linear_parameters(theta)
    holes = _hole_candidates(pair, seeds, round_index=3)
    floor = HOLE_LABEL_MIN * float(default_r0(["Cu"])[0, 0])
    assert holes and {t for _, t, _ in holes} == {"hole"}
    assert "dimer" in {m["scan"] for _, _, m in holes}  # the cluster hole lies below the floor
    assert all(m["distance"] >= floor and m["round"] == 3 for _, _, m in holes)
    student, _ = load_model(run_dir)
    assert _hole_candidates(student, seeds, round_index=0) == []


def test_core_rows_are_zbl_dimers_below_the_floor_and_the_student_follows_them(run_dir):
    """Every element pair gets dimers from 0.3 to 0.55 r0 labelled by the ZBL core alone; the
    distilled student's fitted pair, held by these lightly weighted rows, cancels at most half
    of the core's push, and its dimer energy rises all the way in; they are fitted, never
    stored as teacher labels."""
    from mlff.distill.loop import CORE_ROW_MIN, HOLE_LABEL_MIN, core_rows
    from mlff.io import load_model
    from mlff.models.radial import default_r0

    config = DistillConfig(structure=["Cu-fcc"])
    rows = core_rows(["Cu", "Ni"], config)
    r0 = default_r0(["Cu", "Ni"])
    assert len(rows) == 3 * 10 and {a.info["config_type"] for a in rows} == {"core"}
    for atoms in rows:
        a, b = (["Cu", "Ni"].index(s) for s in atoms.get_chemical_symbols())
        r = atoms.get_distance(0, 1)
        assert CORE_ROW_MIN * r0[a, b] - 1e-9 <= r <= HOLE_LABEL_MIN * r0[a, b] + 1e-9
        assert not atoms.pbc.any()
        assert atoms.get_forces()[0, 0] < -1.0  # pushed apart, by eV/Å
    assert core_rows(["Cu"], DistillConfig(structure=["Cu-fcc"], pair={"repulsion": False})) == []

    student, _ = load_model(run_dir)
    calc = SiteCalculator(student)
    energies = []
    for atoms in core_rows(["Cu"], config):  # r grows from 0.3 to 0.55 r0
        label = atoms.get_forces()[0, 0]
        atoms.calc = calc
        assert atoms.get_forces()[0, 0] < 0.5 * label < 0
        energies.append(atoms.get_potential_energy())
    assert np.all(np.diff(energies) < 0)  # a wall: the energy falls as r grows
    store = LabelStore(run_dir / "labels.db", teacher="emt")
    assert store.configurations("core") == []


def test_absurd_teacher_labels_stay_out_of_the_fit():
    """A teacher squeezed far outside its data can answer 10^12 eV/Å or NaN: such labels are
    left out (and named), ordinary ones kept."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from mlff.distill.loop import trusted_labels

    good = bulk("Cu", "fcc", a=3.6, cubic=True)
    good.rattle(0.05, seed=1)
    good.calc = EMT()
    good.calc = SinglePointCalculator(
        good, energy=good.get_potential_energy(), forces=good.get_forces()
    )
    wild, nan = good.copy(), good.copy()
    forces = good.get_forces().copy()
    forces[2, 1] = 1e12
    wild.calc = SinglePointCalculator(wild, energy=-1e10, forces=forces)
    wild.info["config_type"] = "hole"
    nan.calc = SinglePointCalculator(nan, energy=float("nan"), forces=good.get_forces())
    kept, rejected = trusted_labels([good, wild, nan], max_force=100.0)
    assert kept == [good] and len(rejected) == 2 and "hole Cu4 |F| 1e+12" in rejected[0]
    with pytest.raises(ValueError, match="max_label_force"):
        DistillConfig(structure=["Cu-fcc"], max_label_force=0).validate()
