"""Fuzzing checkpoint documents: a mutated student.json loads or is refused with ValueError /
FileNotFoundError, quickly, and neither loading nor saving over it touches a file outside
its run directory."""

import json
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlff import ACEModel, OneBody, PairModel, Stack, load_model, save_model
from mlff.io import model_config, validate_config

OUTSIDE = "@OUTSIDE@"  # replaced by the directory that holds the run directory
HOSTILE_NAMES = [
    "../outside.txt",
    f"{OUTSIDE}/outside.txt",
    "../sibling/student.0123456789ab.safetensors",
    "student.0123456789ab.safetensors",
    "student.safetensors",
    "sibling/../student.json",
    "/dev/zero",
    ".",
]
ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 8, 64, 65, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 1e-300, 20.0, 20.000001]),
    st.text(max_size=12),
    st.sampled_from(
        [
            "Si",
            "H",
            "C",
            "X",
            "Zz",
            "Stack",
            "OneBody",
            "PairModel",
            "ACEModel",
            "1",
            "4",
            "5",
            *HOSTILE_NAMES,
        ]
    ),
)
JSON_VALUES = st.recursive(
    ATOMS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "parts",
                    "e0",
                    "elements",
                    "cutoff",
                    "n_max",
                    "l_max",
                    "w_l",
                    "max_degree",
                    "r0",
                    "repulsion",
                    "1",
                    "2",
                    "3",
                    "4",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every position in a JSON document, as a tuple of keys and indices."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(document, path):
    for key in path[:-1]:
        document = document[key]
    return document


#: Plausible numbers, so that many mutated checkpoints still load.
NEAR_VALUES = st.integers(min_value=0, max_value=10) | st.floats(min_value=0.1, max_value=10.0)


def _mutate(data, document):
    """One change: a random or a plausible value at a random position, a deleted entry or an
    added key."""
    path = data.draw(st.sampled_from(list(_paths(document))))
    action = data.draw(st.sampled_from(["replace", "nudge", "nudge", "delete", "add"]))
    if not path:
        return data.draw(JSON_VALUES) if action == "replace" else document
    parent = _parent(document, path)
    if action == "replace":
        parent[path[-1]] = data.draw(JSON_VALUES)
    elif action == "nudge":
        parent[path[-1]] = data.draw(NEAR_VALUES)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[
            data.draw(st.sampled_from(["weights", "model", "type", "extra", "parts", "1", "5"]))
        ] = data.draw(JSON_VALUES)
    return document


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """(student, saved run directory) of a small stack with every model type."""
    elements = ["Si", "C"]
    student = Stack(
        [
            OneBody({"Si": -1.0, "C": -2.0}),
            PairModel(elements, cutoff=4.0, n_max=3, repulsion=True),
            ACEModel(elements, cutoff=3.5, n_max=2, l_max=1, max_degree={1: 2, 2: 3}),
        ]
    )
    run = tmp_path_factory.mktemp("fuzz-template") / "run"
    save_model(student, run / "student")
    return student, run


def _snapshot(root: Path, skip: Path) -> dict:
    """Name → (size, mtime, content) of every file under ``root`` outside ``skip``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip:
            dirnames.clear()
            continue
        for name in filenames:
            path = Path(dirpath) / name
            stat = path.lstat()
            out[str(path)] = (stat.st_size, stat.st_mtime_ns, path.read_bytes())
    return out


def _load_and_save_over(template, data) -> None:
    student, saved = template
    document = json.loads((saved / "student.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        document = _mutate(data, document)
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        (root / "outside.txt").write_text("outside")
        (root / "sibling").mkdir()
        (root / "sibling" / "student.0123456789ab.safetensors").write_text("sibling")
        run = Path(shutil.copytree(saved, root / "run"))
        (run / "student.json").write_text(json.dumps(document).replace(OUTSIDE, str(root)))
        before = _snapshot(root, run)
        try:
            model, metadata = load_model(run)
        except (ValueError, FileNotFoundError) as err:
            event(f"refused: {type(err).__name__}")
        else:
            event("loaded")
            validate_config(model_config(model))
            assert isinstance(metadata, dict)
        path = save_model(student, run / "student")
        assert _snapshot(root, run) == before
        assert sorted(p.name for p in run.iterdir()) == sorted(
            ["student.json", json.loads(path.read_text())["weights"]]
        )


@settings(
    max_examples=100,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_checkpoints_load_or_are_refused_and_touch_nothing_outside(template, data):
    _load_and_save_over(template, data)


@pytest.mark.slow
@settings(
    max_examples=2000,
    deadline=timedelta(seconds=10),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_checkpoints_long_run(template, data):
    _load_and_save_over(template, data)


def test_the_template_loads(template):
    student, run = template
    assert model_config(load_model(run)[0]) == model_config(student)
