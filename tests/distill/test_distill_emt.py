"""End to end: distil EMT copper through the CLI, then drive ASE MD with the student."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from mlff import DistilledCalculator
from mlff.cli import main
from mlff.distill import LabelStore

CONFIG = """
teacher = "emt"
structure = "Cu-fcc"
target_atoms = 32
budget = 90
rounds = 2
per_round = 16
md_steps = 60
md_interval = 10
md_temperatures = [300.0, 900.0, 1500.0]
validation_md = {"600" = 3, "1200" = 3}
validation = {"vacancy" = 3, "strain" = 3}
validation_md_steps = 45
timing_atoms = 32
timing_steps = 3
committee_size = 8
initial = {"rattle" = 12, "strain" = 10, "vacancy" = 8, "surface" = 6}
ace = {"n_max" = 6, "max_degree" = {"1" = 6, "2" = 9, "3" = 9}}
"""


def _small() -> dict:
    import tomllib

    return tomllib.loads(CONFIG)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("emt-run")
    config = out / "distill.toml"
    config.write_text(CONFIG)
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
    assert len(list(run_dir.glob("student.*.safetensors"))) == 1
    report = json.loads((run_dir / "report.json").read_text())
    assert report["teacher"] == "emt" and report["labels"] <= 90
    assert len(report["learning_curve"]) >= 2
    assert report["speed"]["teacher_s_per_step"] > 0 and report["speed"]["student_s_per_step"] > 0
    test = report["errors"]["test"]["rows"]["all"]
    assert test["energy"]["rmse"] < 5.0  # meV/atom against the teacher, held out
    assert test["forces"]["rmse"] < 60.0  # meV/Å
    assert "Speed-up" in (run_dir / "report.md").read_text()


def test_rerun_resumes_without_relabelling(run_dir):
    before = len(LabelStore(run_dir / "labels.db", teacher="emt"))
    config = run_dir / "distill.toml"
    config.write_text(CONFIG.replace("budget = 90", f"budget = {before}"))
    assert main(["distill", "--config", str(config), "--out", str(run_dir), "--quiet"]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["teacher_calls_this_run"] == 0
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
        {**_small(), "out": str(tmp_path), "budget": 40, "rounds": 0}
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
    with pytest.raises(ValueError, match="cannot do element"):
        from mlff.distill.loop import DistillConfig, distill

        distill(
            DistillConfig(teacher="emt", structure="Si-diamond", out=str(tmp_path / "si")),
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
        {**_small(), **setting, "out": str(tmp_path), "budget": 40, "rounds": 0}
    )
    with pytest.raises(ValueError, match=message):
        distill(config, teacher=CountingEMT(), progress=False, log=lambda *a: None)
    assert CountingEMT.calls == 0 and not (tmp_path / "student.json").exists()
