import json

import numpy as np
import pytest
import torch

from helpers import STRUCTURES, make_stack
from mlff import SiteCalculator, load_model, save_model
from mlff.io import resolve_checkpoint


def test_round_trip_gives_bit_identical_predictions(tmp_path):
    stack = make_stack()
    path = save_model(stack, tmp_path / "run" / "student", metadata={"teacher": "emt", "errors": {"forces": 1.5}})
    assert path.name == "student.json" and len(list((tmp_path / "run").glob("student.*.safetensors"))) == 1
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
    assert [n for n in names if n.endswith(".safetensors")][0].startswith("student.")
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
    real = mlff.io._atomic_write

    def die_on_json(path, write):
        if path.suffix == ".json":
            raise KeyboardInterrupt("killed between the two writes")
        real(path, write)

    monkeypatch.setattr(mlff.io, "_atomic_write", die_on_json)
    stack.set_linear_parameters(torch.zeros(stack.length_basis(), dtype=torch.float64))
    with pytest.raises(KeyboardInterrupt):
        save_model(stack, tmp_path / "student")
    monkeypatch.setattr(mlff.io, "_atomic_write", real)
    assert torch.equal(load_model(tmp_path)[0].get_linear_parameters(), before)
