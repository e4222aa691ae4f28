import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.data import chemical_symbols
from helpers import STRUCTURES, make_stack
from safetensors.torch import load_file, save_file

from mlff import SiteCalculator, load_model, save_model
from mlff.cli import main
from mlff.io import (
    _expected_shapes,
    model_config,
    model_from_config,
    resolve_checkpoint,
    validate_config,
)
from mlff.models.ace_basis import (
    basis_size_bound,
    enumerate_ace_basis,
    enumeration_size,
)
from mlff.models.radial import default_r0


def test_round_trip_gives_bit_identical_predictions(tmp_path):
    stack = make_stack()
    path = save_model(
        stack, tmp_path / "run" / "student", metadata={"teacher": "emt", "errors": {"forces": 1.5}}
    )
    assert (
        path.name == "student.json"
        and len(list((tmp_path / "run").glob("student.*.safetensors"))) == 1
    )
    loaded, metadata = load_model(tmp_path / "run")
    assert metadata == {"teacher": "emt", "errors": {"forces": 1.5}}
    for name in STRUCTURES:
        atoms = STRUCTURES[name]()
        atoms.calc = SiteCalculator(stack)
        f0, e0 = atoms.get_forces().copy(), atoms.get_potential_energy()
        atoms.calc = SiteCalculator(loaded)
        f1, e1 = atoms.get_forces(), atoms.get_potential_energy()
        assert e1 == e0
        assert np.array_equal(f1, f0)
    assert torch.equal(loaded.get_linear_parameters(), stack.get_linear_parameters())


def test_checkpoint_json_is_plain_data(tmp_path):
    path = save_model(make_stack(), tmp_path / "student")
    document = json.loads(path.read_text())
    assert document["format"] == "mlff-checkpoint" and document["model"]["type"] == "Stack"
    assert [p["type"] for p in document["model"]["parts"]] == ["OneBody", "PairModel", "ACEModel"]
    assert resolve_checkpoint(tmp_path / "student") == path


def test_overwrite_is_atomic_and_leaves_no_temporary_files(tmp_path):
    stack = make_stack()
    save_model(stack, tmp_path / "student")
    stack.set_linear_parameters(torch.zeros(stack.length_basis(), dtype=torch.float64))
    save_model(stack, tmp_path / "student")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and "student.json" in names
    assert next(n for n in names if n.endswith(".safetensors")).startswith("student.")
    loaded, _ = load_model(tmp_path / "student.json")
    assert not loaded.get_linear_parameters().any()


def test_bad_checkpoints_are_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_model(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not an mlff checkpoint"):
        load_model(tmp_path / "other.json")
    path = save_model(make_stack(), tmp_path / "student")
    weights = next(tmp_path.glob("student.*.safetensors"))
    weights.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="do not fit the model"):
        load_model(path)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_model(path)
    with pytest.raises(TypeError, match="metadata|serializable"):
        save_model(make_stack(), tmp_path / "x", metadata={"bad": object()})
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "x.safetensors").exists()


def test_crash_between_weights_and_json_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    import mlff.io

    stack = make_stack()
    save_model(stack, tmp_path / "student")
    before = load_model(tmp_path)[0].get_linear_parameters()
    real = mlff.io.atomic_write

    def die_on_json(path, write):
        if path.suffix == ".json":
            raise KeyboardInterrupt("killed between the two writes")
        real(path, write)

    monkeypatch.setattr(mlff.io, "atomic_write", die_on_json)
    stack.set_linear_parameters(torch.zeros(stack.length_basis(), dtype=torch.float64))
    with pytest.raises(KeyboardInterrupt):
        save_model(stack, tmp_path / "student")
    monkeypatch.setattr(mlff.io, "atomic_write", real)
    assert torch.equal(load_model(tmp_path)[0].get_linear_parameters(), before)


# -- hostile and broken checkpoints ---------------------------------------------------------------

HEX = "0123456789ab"


@pytest.fixture(scope="module")
def saved_stack(tmp_path_factory) -> Path:
    """A saved make_stack() checkpoint; tests copy it before changing it."""
    run = tmp_path_factory.mktemp("template") / "run"
    save_model(make_stack(), run / "student")
    return run


@pytest.fixture
def run(saved_stack, tmp_path) -> Path:
    """A fresh copy of the saved stack in tmp_path/run."""
    return Path(shutil.copytree(saved_stack, tmp_path / "run"))


def _document(run: Path) -> dict:
    return json.loads((run / "student.json").read_text())


def _write_document(run: Path, document) -> None:
    (run / "student.json").write_text(json.dumps(document))


def _weights(run: Path) -> Path:
    return run / _document(run)["weights"]


@pytest.mark.parametrize("poison", ["relative", "absolute", "symlink", "symlinked-directory"])
def test_a_poisoned_checkpoint_never_touches_files_outside_its_directory(run, tmp_path, poison):
    outside = tmp_path / "results.csv"
    outside.write_text("precious\n")
    names = {
        "relative": "../results.csv",
        "absolute": str(outside),
        "symlink": f"student.{HEX}.safetensors",
        "symlinked-directory": "link/results.csv",
    }
    if poison == "symlink":
        (run / names["symlink"]).symlink_to(outside)
    if poison == "symlinked-directory":
        (run / "link").symlink_to(tmp_path)
    document = _document(run)
    document["weights"] = names[poison]
    _write_document(run, document)
    expected = (
        "outside the checkpoint's directory"
        if poison == "symlink"
        else "accepted a plain file name next to the JSON"
    )
    with pytest.raises(
        ValueError,
        match=re.escape(repr(names[poison])) + ".*" + expected
        if poison != "symlink"
        else f"weights {names['symlink']} is a link to .*results.csv, " + expected,
    ):
        load_model(run)
    if poison != "symlink":
        with pytest.raises(
            ValueError, match=re.escape(r"'student.<12 lowercase hex digits>.safetensors'")
        ):
            load_model(run)
    model = make_stack()
    model.set_linear_parameters(torch.zeros(model.length_basis(), dtype=torch.float64))
    save_model(model, run / "student")
    assert outside.read_text() == "precious\n"
    assert not load_model(run)[0].get_linear_parameters().any()


@pytest.mark.parametrize(
    "name",
    [
        f"sub/student.{HEX}.safetensors",
        f"student.{HEX}.safetensors\n",
        f"./student.{HEX}.safetensors",
        "../student.safetensors",
        "/etc/passwd",
        f".student.{HEX}.safetensors",
        "student.json",
        "results.csv",
        f"sub\\student.{HEX}.safetensors",
        5,
        None,
        ["x"],
    ],
)
def test_load_refuses_weights_names_that_are_not_plain_files_next_to_the_json(run, name):
    document = _document(run)
    document["weights"] = name
    _write_document(run, document)
    with pytest.raises(
        ValueError,
        match=re.escape(f"weights = {name!r}; accepted a plain file name next to the JSON"),
    ):
        load_model(run)


@pytest.mark.parametrize("name", ["student.safetensors", "student.v2.0123456789ab.safetensors"])
def test_checkpoints_with_older_weights_names_still_load(run, name):
    """Checkpoints written before content-addressed names (``student.safetensors``), or saved
    under a dotted base name, load; save_model then writes the pattern and leaves the old file."""
    reference = load_model(run)[0].get_linear_parameters()
    _weights(run).rename(run / name)
    document = _document(run)
    document["weights"] = name
    _write_document(run, document)
    assert torch.equal(load_model(run)[0].get_linear_parameters(), reference)
    save_model(load_model(run)[0], run / "student")
    assert (run / name).exists() and _document(run)["weights"] != name


def test_save_removes_leftovers_of_this_checkpoint_and_nothing_else(run, tmp_path):
    outside = tmp_path / "outside.safetensors"
    outside.write_text("keep")
    leftovers = [
        ".student.json.abcd_123",
        f".student.{HEX}.safetensors.x9yz0a_b",
        f"student.{HEX}.safetensors",
        f"student.{'f' * 12}.safetensors",
    ]
    decoys = [
        ".student.json.abc",
        ".student.json.abcd1234.bak",
        f"student.{HEX}.safetensors.bak",
        f"other.{HEX}.safetensors",
        ".other.json.abcd1234",
        f"student.{HEX}c.safetensors",
        f"student.{HEX.upper()}.safetensors",
        "notes.txt",
        f"xstudent.{HEX}.safetensors",
        f".student.{HEX}.safetensors.ABCD1234",
    ]
    for name in leftovers + decoys:
        (run / name).write_text("x")
    (run / f"student.{'c' * 12}.safetensors").mkdir()
    (run / f"student.{'d' * 12}.safetensors").symlink_to(outside)
    path = save_model(make_stack(), run / "student")
    names = {p.name for p in run.iterdir()}
    assert not names & set(leftovers)
    assert (
        set(decoys) | {f"student.{'c' * 12}.safetensors", f"student.{'d' * 12}.safetensors"}
        <= names
    )
    assert names - set(decoys) - {
        f"student.{'c' * 12}.safetensors",
        f"student.{'d' * 12}.safetensors",
    } == {"student.json", json.loads(path.read_text())["weights"]}
    assert outside.read_text() == "keep"


_KILLED_SAVE = """
import os, signal, sys
import torch
from mlff import OneBody, PairModel, Stack, save_model

path, kill_at = sys.argv[1], sys.argv[2]
model = Stack([OneBody({"Si": -1.0}), PairModel(["Si"], cutoff=4.0, n_max=4)])
save_model(model, path)
real = os.replace

def replace(src, dst):
    if str(dst).endswith(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)

os.replace = replace
model.set_linear_parameters(torch.ones(model.length_basis(), dtype=torch.float64))
save_model(model, path)
"""


@pytest.mark.parametrize("kill_at", [".safetensors", ".json"])
def test_a_save_killed_between_writes_keeps_the_previous_checkpoint_and_the_next_save_cleans_up(
    tmp_path, kill_at
):
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(tmp_path / "student"), kill_at],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(
        n.startswith(f".student{kill_at}" if kill_at == ".json" else ".student.") for n in names
    ), names
    assert len([n for n in names if n.endswith(".safetensors")]) == (
        2 if kill_at == ".json" else 1
    ), names
    model, _ = load_model(tmp_path)
    assert not model.get_linear_parameters().any()  # the first save, whole
    model.set_linear_parameters(torch.full((model.length_basis(),), 2.0, dtype=torch.float64))
    path = save_model(model, tmp_path / "student")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["student.json", json.loads(path.read_text())["weights"]]
    )
    assert torch.equal(
        load_model(tmp_path)[0].get_linear_parameters(), model.get_linear_parameters()
    )


def _set(document: dict, keys: tuple, value) -> None:
    target = document
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


def _deep_stack(depth: int) -> dict:
    config = {"type": "OneBody", "e0": [["Si", -1.0]]}
    for _ in range(depth):
        config = {"type": "Stack", "parts": [config]}
    return config


_ALL_ELEMENTS = list(chemical_symbols[1:119])
_ABSURD = {
    "cutoff": (
        ("model", "parts", 1, "cutoff"),
        1e4,
        r"model\.parts\[1\]\.cutoff = 10000\.0; accepted numbers greater than 0 and at most 20\.0",
    ),
    "negative cutoff": (
        ("model", "parts", 2, "cutoff"),
        -1.0,
        r"model\.parts\[2\]\.cutoff = -1\.0",
    ),
    "nan cutoff": (
        ("model", "parts", 2, "cutoff"),
        float("nan"),
        r"model\.parts\[2\]\.cutoff = nan",
    ),
    "l_max": (
        ("model", "parts", 2, "l_max"),
        10**6,
        r"model\.parts\[2\]\.l_max = 1000000; accepted integers 0 to 8",
    ),
    "n_max": (
        ("model", "parts", 2, "n_max"),
        10**9,
        r"model\.parts\[2\]\.n_max = 1000000000; accepted integers 1 to 64",
    ),
    "pair n_max": (
        ("model", "parts", 1, "n_max"),
        0,
        r"model\.parts\[1\]\.n_max = 0; accepted integers 1 to 64",
    ),
    "huge int": (
        ("model", "parts", 1, "n_max"),
        10**200,
        r"model\.parts\[1\]\.n_max = <an integer of 665 bits>",
    ),
    "max_degree": (
        ("model", "parts", 2, "max_degree"),
        {"1": 1e9, "2": 1e9, "3": 1e9, "4": 1e9},
        r"model\.parts\[2\]: .* allow up to 510812 basis functions per element; "
        r"accepted at most 200000",
    ),
    "big one-particle basis": (
        ("model", "parts", 2),
        {
            "type": "ACEModel",
            "elements": ["H", "C", "Si"],
            "cutoff": 5.0,
            "n_max": 64,
            "l_max": 8,
            "w_l": 1.5,
            "max_degree": {"1": 1e9, "2": 1e9, "3": 1e9},
            "r0": default_r0(["H", "C", "Si"]).tolist(),
        },
        (
            r"model\.parts\[2\]: 3 elements, n_max=64, l_max=8, .* "
            r"would enumerate 8\.63e\+08 factor multisets; "
            r"accepted at most 1e\+07"
        ),
    ),
    "basis": (
        ("model", "parts", 2),
        {
            "type": "ACEModel",
            "elements": ["Si"],
            "cutoff": 5.0,
            "n_max": 16,
            "l_max": 8,
            "w_l": 0.5,
            "max_degree": {"3": 40},
            "r0": [[2.2]],
        },
        r"model\.parts\[2\]: .* allow up to \d+ basis functions per element; "
        r"accepted at most 200000",
    ),
    "order 5": (
        ("model", "parts", 2, "max_degree"),
        {"5": 3.0},
        r"model\.parts\[2\]\.max_degree key = '5'",
    ),
    "inf degree": (
        ("model", "parts", 2, "max_degree", "1"),
        float("inf"),
        r"model\.parts\[2\]\.max_degree\['1'\] = inf",
    ),
    "w_l": (
        ("model", "parts", 2, "w_l"),
        -1.5,
        r"model\.parts\[2\]\.w_l = -1\.5; accepted a finite number >= 0",
    ),
    "thousands of elements": (
        ("model", "parts", 1, "elements"),
        ["Si"] * 2000,
        r"model\.parts\[1\]\.elements = \['Si', .*; accepted a list of 1 to 118 element symbols",
    ),
    "duplicate element": (
        ("model", "parts", 1, "elements"),
        ["H", "C", "H"],
        r"model\.parts\[1\]\.elements\[2\] = 'H'; accepted each element once",
    ),
    "unknown element": (
        ("model", "parts", 2, "elements"),
        ["H", "C", "Zz"],
        r"model\.parts\[2\]\.elements\[2\] = 'Zz'",
    ),
    "every element": (
        ("model", "parts", 2),
        {
            "type": "ACEModel",
            "elements": _ALL_ELEMENTS,
            "cutoff": 5.0,
            "n_max": 10,
            "l_max": 3,
            "w_l": 1.5,
            "max_degree": {"1": 10, "2": 15, "3": 14},
            "r0": default_r0(_ALL_ELEMENTS).tolist(),
        },
        r"model\.parts\[2\]: 118 elements.* would enumerate",
    ),
    "deep stack": (
        ("model",),
        _deep_stack(6),
        r"model\.parts\[0\]\.parts\[0\]\.parts\[0\] is a Stack nested 4 deep",
    ),
    "wide stack": (
        ("model", "parts"),
        [{"type": "OneBody", "e0": [["Si", 0.0]]}] * 17,
        r"model\.parts = .*; accepted a list of 1 to 16 model configs",
    ),
    "e0 inf": (
        ("model", "parts", 0, "e0", 1, 1),
        float("inf"),
        r"model\.parts\[0\]\.e0\[1\]\[1\] = inf",
    ),
    "r0 negative": (
        ("model", "parts", 1, "r0", 0, 0),
        -1.0,
        r"model\.parts\[1\]\.r0: r0 must be a symmetric",
    ),
    "r0 ragged": (
        ("model", "parts", 1, "r0", 2),
        [1.0],
        r"model\.parts\[1\]\.r0 = .*; accepted a symmetric 3 × 3 list",
    ),
}


@pytest.mark.parametrize("case", sorted(_ABSURD))
def test_absurd_configs_are_refused_fast_naming_the_field(run, case):
    keys, value, message = _ABSURD[case]
    document = _document(run)
    _set(document, keys, value)
    _write_document(run, document)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        load_model(run)
    assert time.perf_counter() - start < 0.5


_MALFORMED = {
    "a list": ([], r"is not an mlff checkpoint \(format='a JSON list'\)"),
    "format_version string": (
        {"format_version": "1"},
        r"format_version = '1'; accepted integers 1 to 1",
    ),
    "format_version newer": (
        {"format_version": 2},
        r"format_version = 2; accepted integers 1 to 1",
    ),
    "model 3": ({"model": 3}, r"model = 3; accepted a JSON object with a 'type'"),
    "model type": (
        {"model": {"parts": []}},
        r"model\.type = None; accepted one of Stack, OneBody, PairModel, ACEModel",
    ),
    "parts x": (
        {"model": {"type": "Stack", "parts": "x"}},
        r"model\.parts = 'x'; accepted a list of 1 to 16",
    ),
    "parts empty": ({"model": {"type": "Stack", "parts": []}}, r"model\.parts = \[\]"),
    "e0 dict": (
        {"model": {"type": "OneBody", "e0": {"Si": "a"}}},
        r"model\.e0 = \{'Si': 'a'\}; accepted a list of 1 to 118 \[element, E0 in eV\] pairs",
    ),
    "e0 string": (
        {"model": {"type": "OneBody", "e0": [["Si", "a"]]}},
        r"model\.e0\[0\]\[1\] = 'a'; accepted a finite",
    ),
    "e0 bool": (
        {"model": {"type": "OneBody", "e0": [["Si", True]]}},
        r"model\.e0\[0\]\[1\] = True",
    ),
    "e0 symbol": (
        {"model": {"type": "OneBody", "e0": [[14, 1.0]]}},
        r"model\.e0\[0\]\[0\] = 14; accepted chemical",
    ),
    "weights 5": ({"weights": 5}, r"weights = 5; accepted a plain file name"),
    "metadata list": ({"metadata": [1]}, r"metadata = \[1\]; accepted a JSON object"),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED))
def test_malformed_checkpoints_raise_value_error_naming_the_field(run, case):
    change, message = _MALFORMED[case]
    document = _document(run)
    if isinstance(change, dict):
        document.update(change)
    else:
        document = change
    _write_document(run, document)
    with pytest.raises(ValueError, match=message):
        load_model(run)


@pytest.mark.parametrize(
    ("keys", "value", "message"),
    [
        (("model", "parts", 1, "cutoff"), "3.0", r"model\.parts\[1\]\.cutoff = '3\.0'"),
        (("model", "parts", 1, "cutoff"), True, r"model\.parts\[1\]\.cutoff = True"),
        (("model", "parts", 1, "cutoff"), [4.5], r"model\.parts\[1\]\.cutoff = \[4\.5\]"),
        (
            ("model", "parts", 1, "repulsion"),
            1,
            r"model\.parts\[1\]\.repulsion = 1; accepted true or false",
        ),
        (
            ("model", "parts", 2, "l_max"),
            3.0,
            r"model\.parts\[2\]\.l_max = 3\.0; accepted integers 0 to 8",
        ),
        (("model", "parts", 2, "max_degree"), [4, 6], r"model\.parts\[2\]\.max_degree = \[4, 6\]"),
        (
            ("model", "parts", 2, "max_degree"),
            {"1": -5.0},
            r"model\.parts\[2\]\.max_degree = \{'1': -5\.0\}; "
            r"accepted degrees that admit a basis function",
        ),
        (
            (
                "model",
                "parts",
                1,
                "n_max",
            ),
            None,
            r"model\.parts\[1\]\.n_max = None",
        ),
        (
            ("model", "parts", 1, "extra"),
            1,
            r"model\.parts\[1\] \(PairModel\) has unknown keys \['extra'\]",
        ),
        (
            ("model", "parts", 0, "e0", 0),
            ["Si"],
            r"model\.parts\[0\]\.e0\[0\] = \['Si'\]; accepted an \[element, E0",
        ),
    ],
)
def test_wrong_types_in_the_config_raise_value_error_naming_the_field(run, keys, value, message):
    document = _document(run)
    _set(document, keys, value)
    _write_document(run, document)
    with pytest.raises(ValueError, match=message):
        load_model(run)


def test_missing_keys_raise_value_error_naming_them(run):
    original = _document(run)
    for keys, message in [
        (("model", "parts", 2, "r0"), r"model\.parts\[2\] \(ACEModel\) lacks \['r0'\]"),
        (("model",), r"lacks the 'model' config"),
        (("format_version",), r"format_version = None"),
        (("weights",), r"weights = None"),
    ]:
        document = json.loads(json.dumps(original))
        target = document
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
        _write_document(run, document)
        with pytest.raises(ValueError, match=message):
            load_model(run)


def test_deeply_nested_or_huge_json_is_refused(run, monkeypatch):
    import mlff.io

    (run / "student.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(run)
    (run / "student.json").write_text("1" * 5000)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(run)
    monkeypatch.setattr(mlff.io, "MAX_JSON_BYTES", 10)
    (run / "student.json").write_text(" " * 11)
    with pytest.raises(ValueError, match=r"is 11 bytes; a checkpoint JSON has at most 10"):
        load_model(run)


def _rewrite_weights(run: Path, change) -> None:
    path = _weights(run)
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


def _poke(key: str, index: tuple, value: float):
    def change(state):
        state[key][index] = value

    return change


def _symmetric(key: str, value: float):
    def change(state):
        state[key][0, 1] = state[key][1, 0] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _poke("parts.2.readout.weight", (1, 5), float("nan")),
            r"tensor 'parts\.2\.readout\.weight' contains NaN or inf",
        ),
        (
            _poke("parts.1.readout.weight", (0, 0), float("inf")),
            r"tensor 'parts\.1\.readout\.weight' contains NaN or inf",
        ),
        (_poke("parts.0.e0", (1,), float("nan")), r"tensor 'parts\.0\.e0' contains NaN or inf"),
        (
            _poke("parts.1.radial.transform.r0", (0, 0), float("inf")),
            r"tensor 'parts\.1\.radial\.transform\.r0' contains",
        ),
        (
            _symmetric("parts.2.radial.transform.r0", -1.0),
            r"tensor 'parts\.2\.radial\.transform\.r0': "
            r"r0 must be a symmetric \(3, 3\) tensor of positive bond lengths",
        ),
        (
            _poke("parts.1.radial.transform.r0", (0, 1), 3.0),
            r"tensor 'parts\.1\.radial\.transform\.r0': r0 must be a symmetric",
        ),
        (
            _symmetric("parts.1.repulsion.r_inner", 5.0),
            r"tensors 'parts\.1\.repulsion\.r_inner' and 'parts\.1\.repulsion\.r_outer': "
            r"need finite 0 < r_inner < r_outer",
        ),
        (
            _poke("parts.1.repulsion.r_inner", (2, 2), 0.0),
            r"tensors 'parts\.1\.repulsion\.r_inner' and",
        ),
        (
            _poke("parts.1.repulsion.z", (0,), 92.0),
            r"tensor 'parts\.1\.repulsion\.z' = \[92\.0, 6\.0, 14\.0\]; "
            r"expected the atomic numbers \[1\.0, 6\.0, 14\.0\]",
        ),
    ],
)
def test_invalid_weights_are_refused_naming_the_tensor(run, change, message):
    _rewrite_weights(run, change)
    with pytest.raises(ValueError, match=rf"weights {re.escape(_weights(run).name)}: {message}"):
        load_model(run)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.update(
                {"parts.2.readout.weight": torch.zeros(3, 100_000, dtype=torch.float64)}
            ),
            r"tensor 'parts\.2\.readout\.weight' has shape \(3, 100000\); "
            r"the config implies \(3, 1 to \d+\)",
        ),
        (
            lambda s: s.update({"parts.1.readout.weight": torch.zeros(6, dtype=torch.float64)}),
            r"tensor 'parts\.1\.readout\.weight' has shape \(6,\); the config implies \(6, 6\)",
        ),
        (
            lambda s: s.update({"parts.0.e0": torch.zeros(3, dtype=torch.int64)}),
            r"tensor 'parts\.0\.e0' is I64; accepted F16",
        ),
        (
            lambda s: s.update({"parts.9.extra": torch.zeros(1, dtype=torch.float64)}),
            r"unexpected tensors \['parts\.9\.extra'\]; "
            r"the config implies \['parts\.0\.e0', .* and 3 more$",
        ),
        (lambda s: s.pop("parts.1.repulsion.z"), r"missing tensors \['parts\.1\.repulsion\.z'\]"),
    ],
)
def test_weights_whose_header_does_not_fit_the_config_are_refused_before_reading(
    run, change, message
):
    _rewrite_weights(run, change)
    with pytest.raises(ValueError, match=r"do not fit the model in .*student\.json: " + message):
        load_model(run)


def test_weights_that_are_not_a_file_are_refused(run):
    path = _weights(run)
    path.unlink()
    path.mkdir()
    with pytest.raises(ValueError, match="is not a regular file"):
        load_model(run)


def test_save_refuses_a_model_that_load_would_refuse(tmp_path):
    stack = make_stack()
    theta = stack.get_linear_parameters()
    theta[-1] = float("nan")
    stack.parts[2].readout.weight.view(-1).copy_(theta[-stack.parts[2].length_basis() :])
    with pytest.raises(
        ValueError,
        match=r"refusing to save .*tensor 'parts\.2\.readout\.weight' contains NaN or inf",
    ):
        save_model(stack, tmp_path / "student")
    assert not list(tmp_path.iterdir())


def test_model_config_round_trips_and_implies_the_state_shapes(saved_stack):
    stack = load_model(saved_stack)[0]
    config = model_config(stack)
    validate_config(config)
    assert model_config(model_from_config(json.loads(json.dumps(config)))) == config
    shapes = _expected_shapes(config)
    state = stack.state_dict()
    assert set(shapes) == set(state)
    for key, tensor in state.items():
        assert len(tensor.shape) == len(shapes[key]), key
        assert all(lo <= d <= hi for d, (lo, hi) in zip(tensor.shape, shapes[key], strict=True)), (
            key
        )
        assert key == "parts.2.readout.weight" or all(lo == hi for lo, hi in shapes[key])


@pytest.mark.parametrize(
    ("n_elements", "n_max", "l_max", "max_degree", "w_l"),
    [
        (1, 10, 3, {1: 10, 2: 15, 3: 14}, 1.5),
        (3, 4, 3, {1: 4, 2: 6, 3: 7, 4: 7}, 1.5),
        (2, 5, 2, {2: 8, 4: 9}, 0.0),
        (1, 6, 4, {1: 9, 3: 12, 4: 11}, 1.0),
    ],
)
def test_basis_size_bound_is_an_upper_bound(n_elements, n_max, l_max, max_degree, w_l):
    elements = ("H", "C", "Si")[:n_elements]
    actual = len(enumerate_ace_basis(elements, n_max, l_max, max_degree, w_l))
    assert actual <= basis_size_bound(n_elements, n_max, l_max, max_degree, w_l) <= 5 * actual
    assert enumeration_size(n_elements, n_max, l_max, max_degree, w_l) >= actual


def test_info_reports_a_bad_checkpoint_in_one_line(run, capsys):
    document = _document(run)
    document["model"]["parts"][2]["l_max"] = 10**6
    _write_document(run, document)
    assert main(["info", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlff info: error: checkpoint ")
    assert "model.parts[2].l_max = 1000000; accepted integers 0 to 8" in err


def test_info_survives_free_form_metadata(run, capsys):
    document = _document(run)
    document["metadata"] = {"teacher": "emt", "errors": {"test": {"rows": 3}, "train": "x"}}
    _write_document(run, document)
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "test errors:\n  (not an error table)" in out and "train errors:" in out


def test_a_dotted_checkpoint_name_is_its_own_checkpoint(tmp_path):
    """``run/model.v2`` used to write ``run/model.json``, overwriting the checkpoint ``model``."""
    first, second = make_stack(), make_stack()
    second.set_linear_parameters(torch.zeros(second.length_basis(), dtype=torch.float64))
    save_model(first, tmp_path / "model")
    path = save_model(second, tmp_path / "model.v2")
    assert path.name == "model.v2.json"
    assert torch.equal(
        load_model(tmp_path / "model")[0].get_linear_parameters(), first.get_linear_parameters()
    )
    assert not load_model(tmp_path / "model.v2")[0].get_linear_parameters().any()
    assert load_model(tmp_path / "model.v2.json")[0] is not None


def test_a_weights_name_too_long_for_the_file_system_is_a_value_error(run):
    document = _document(run)
    document["weights"] = "w" * 300 + ".safetensors"
    _write_document(run, document)
    with pytest.raises(ValueError, match="cannot be opened: File name too long"):
        load_model(run)


def test_inner_switch_round_trips_and_bad_fractions_are_refused(tmp_path):
    import json

    from mlff import ACEModel, OneBody, PairModel, Stack

    model = Stack(
        [
            OneBody({"Si": -1.0}),
            PairModel(["Si"], n_max=3, repulsion=True, inner=(0.4, 0.6)),
            ACEModel(["Si"], n_max=3, max_degree={1: 3, 2: 4}, inner=(0.5, 0.7)),
        ]
    )
    save_model(model, tmp_path / "s")
    loaded, _ = load_model(tmp_path / "s")
    assert (loaded.parts[1].radial.inner.start, loaded.parts[1].radial.inner.end) == (0.4, 0.6)
    assert (loaded.parts[2].radial.inner.start, loaded.parts[2].radial.inner.end) == (0.5, 0.7)
    document = json.loads((tmp_path / "s.json").read_text())
    document["model"]["parts"][2]["inner"] = [0.7, 0.5]
    (tmp_path / "s.json").write_text(json.dumps(document))
    with pytest.raises(
        ValueError, match=r"parts\[2\].inner = \[0.7, 0.5\]; accepted \[start, end\]"
    ):
        load_model(tmp_path / "s")
