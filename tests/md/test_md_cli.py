"""mlff bench / profile / validate from the command line: EMT teacher against a saved Cu
student, the files they write, exit codes 0 (done / PASS), 1 (FAIL) and 2 (bad input)."""

import json

import numpy as np
import pytest

from mlff import OneBody, PairModel, Stack, save_model
from mlff.cli import main
from mlff.md import check_schema


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    """A Cu pair-potential student (a Morse well, D = 0.5 eV at 2.55 Å) saved as a run directory."""
    out = tmp_path_factory.mktemp("cu-student")
    pair = PairModel(["Cu"], cutoff=5.0, n_max=8, repulsion=True)
    r = np.linspace(2.0, 4.95, 200)
    pair.fit_dimer_curve(("Cu", "Cu"), r, 0.5 * ((1 - np.exp(-1.4 * (r - 2.55))) ** 2 - 1))
    save_model(Stack([OneBody({"Cu": -3.5}), pair]), out / "student")
    return out


def test_bench_teacher_and_student_side_by_side(student_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(
        [
            "bench",
            "--teacher",
            "teacher:emt",
            "--student",
            str(student_dir),
            "--structure",
            "Cu-fcc",
            "--sizes",
            "small",
            "--ensembles",
            "nve",
            "npt-iso",
            "--steps",
            "5",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "teacher" in printed and "student" in printed and "bench.json" in printed
    data = json.loads((out / "bench.json").read_text())
    check_schema(data)
    assert (
        data["calculators"]["teacher"]["spec"] == "teacher:emt"
        and data["calculators"]["teacher"]["reference"]
    )
    assert data["calculators"]["student"]["kind"] == "student"
    for case in data["cases"]:
        assert set(case["runs"]) == {"teacher", "student"}
        assert case["speed_ratio"]["p50"]["student"] > 0
    assert data["environment"]["machine"]["torch_threads"] == 1
    assert {p.name for p in out.iterdir()} == {
        "bench.json",
        "latency_histogram.png",
        "energy.png",
        "scaling.png",
    }


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_profile_writes_json(student_dir, tmp_path, capsys, backend):
    path = tmp_path / "profile.json"
    assert (
        main(
            [
                "profile",
                str(student_dir / "student.json"),
                "--structure",
                "Cu-fcc",
                "--calls",
                "5",
                "--leak-calls",
                "20",
                "--hotspot-calls",
                "2",
                "--backend",
                backend,
                "--out",
                str(path),
                "--quiet",
            ]
        )
        == 0
    )
    data = json.loads(path.read_text())
    names = " ".join(row["name"] for row in data["hotspots"]["cprofile"])
    assert ("pair_energies_and_grads" in names) == (backend == "auto")  # the numba kernel, or torch
    assert data["n_atoms"] == 32 and {"graph", "forward", "convert", "ase"} <= set(data["stages"])
    assert data["leak"]["calls"] == 20 and data["hotspots"]["cprofile"]
    assert "hotspots (cprofile)" in capsys.readouterr().out


def test_validate_exit_codes(tmp_path, capsys):
    # 0.1 ps is too short to resolve the default drift limit or to let the mean temperature
    # settle (both tested in test_validate.py), so this smoke run widens those two.
    args = [
        "validate",
        "emt",
        "--structure",
        "Cu-fcc",
        "--duration-ps",
        "0.1",
        "--timestep-fs",
        "2",
        "--equilibrate-ps",
        "0.2",
        "--sample-interval",
        "2",
        "--temperature-tolerance",
        "0.9",
        "--quiet",
        "--no-plots",
        "--max-drift",
        "1.0",
    ]
    assert main(args + ["--out", str(tmp_path / "ok")]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    assert json.loads((tmp_path / "ok" / "validate.json").read_text())["verdict"] == "PASS"
    # A fluctuation limit no MD run can meet: the same run must now FAIL with exit code 1.
    assert main(args + ["--max-fluctuation", "1e-9", "--out", str(tmp_path / "fail")]) == 1
    assert "verdict: FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["bench", "--calc", "teacher:emt", "--ensembles", "nvx"],
            "unknown ensemble 'nvx'; accepted: nve",
        ),
        (
            ["bench", "--calc", "teacher:emt", "--steps", "-5"],
            "steps must be an integer >= 1, got -5",
        ),
        (
            [
                "bench",
                "--calc",
                "teacher:emt",
                "--structure",
                "Si-diamond",
                "--sizes",
                "small",
                "--steps",
                "5",
            ],
            r"emt (EMT) cannot handle element(s) Si in Si32; it knows: H, C",
        ),
        (
            ["bench", "--calc", "no/such/run"],
            "calculator spec 'no/such/run': no such file or directory",
        ),
        (["bench", "--structure", "Cu-fcc"], "give at least one calculator"),
        (
            ["validate", "emt", "--structure", "Cu-fcc", "--duration-ps", "-1"],
            "duration_ps must be a finite number > 0",
        ),
        (
            ["profile", "emt", "--structure", "Cu-fcc", "--dtype", "float16"],
            "unknown dtype 'float16'; accepted: float64",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlff {argv[0]}: error: ") and message in err
    assert not (tmp_path / "x").exists()


def test_unknown_backend_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "emt", "--backend", "cuda"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --backend: invalid choice: 'cuda'" in err and "numba" in err
