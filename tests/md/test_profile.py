"""profile_calculator: stage times of an mlff student, known sleeps, the leak check and the
hotspots."""

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from md_helpers import Leaky, Slow, copper

from mlff import ACEModel, OneBody, PairModel, StackedCalculator
from mlff.md.profile import profile_calculator
from mlff.testing import random_linear_parameters


def _student(**kwargs):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 1))
    pair = PairModel(["Si"], cutoff=4.0, repulsion=True)
    ace = ACEModel(["Si"], cutoff=4.0, n_max=4, l_max=2, max_degree={1: 4, 2: 6, 3: 6})
    random_linear_parameters(pair, atoms, seed=1)
    random_linear_parameters(ace, atoms, seed=2)
    return atoms, StackedCalculator([OneBody({"Si": -4.0}), pair, ace], **kwargs)


def test_student_stages_add_up_to_the_call():
    atoms, calc = _student()
    result = profile_calculator(
        calc, atoms, calls=15, warmup=2, leak_calls=0, hotspot_calls=3, top=5
    )
    assert set(result.stages) == {"graph", "forward", "convert", "ase"}
    for stats in [result.total, *result.stages.values()]:
        assert 0 <= stats["min"] <= stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    # The stages are timed inside the call, and "ase" is the rest: the means add up to the total.
    assert sum(s["mean"] for s in result.stages.values()) == pytest.approx(
        result.total["mean"], rel=1e-6
    )
    assert sum(result.stage_share.values()) == pytest.approx(1.0, rel=1e-6)
    assert result.evaluations_per_call == 1.0
    assert calc.stage_timer is None  # the hook is taken off again
    names = " ".join(row["name"] for row in result.hotspots["cprofile"])
    assert (
        "(ace.py:" in names
    )  # the ACE model (mlff/models/ace.py) or its kernel (mlff/kernels/ace.py)
    assert result.hotspots["torch"] == []  # the CPU kernel path runs no torch operation per call
    assert "ase" in result.summary() and "forward" in result.summary()


def test_torch_hotspots_of_the_torch_backend():
    atoms, calc = _student(backend="torch")
    result = profile_calculator(
        calc, atoms, calls=3, warmup=1, leak_calls=0, hotspot_calls=2, top=5
    )
    assert result.hotspots["torch"] and all(
        row["name"] and row["calls"] >= 1 for row in result.hotspots["torch"]
    )


def test_stress_after_forces_is_counted_and_timed():
    atoms, calc = _student()
    result = profile_calculator(
        calc,
        atoms,
        calls=5,
        warmup=1,
        properties=("forces", "stress"),
        leak_calls=0,
        hotspot_calls=0,
    )
    assert result.properties == ["energy", "forces", "stress"]
    assert result.evaluations_per_call >= 1.0


def test_known_sleep_sets_the_floor_and_tops_the_hotspots():
    result = profile_calculator(
        Slow(EMT(), 0.004), copper(), calls=10, warmup=1, leak_calls=0, hotspot_calls=3
    )
    assert result.total["min"] >= 0.004
    assert (
        result.stages == {} and result.evaluations_per_call is None
    )  # not an mlff student: total only
    assert "sleep" in result.hotspots["cprofile"][0]["name"]
    assert "torch" not in result.hotspots  # EMT holds no torch module


def test_leak_check_flags_a_leak_and_passes_a_clean_calculator():
    leaky = profile_calculator(
        Leaky(EMT(), 64 * 1024), copper(), calls=3, warmup=1, leak_calls=60, hotspot_calls=0
    )
    assert leaky.leak["leak_suspected"]
    assert leaky.leak["python_growth_kB_per_call"] == pytest.approx(
        64.0, rel=0.1
    )  # numpy buffers are traced
    assert "md_helpers.py" in leaky.leak["top_python_growth"][0]["where"]
    clean = profile_calculator(EMT(), copper(), calls=3, warmup=1, leak_calls=60, hotspot_calls=0)
    assert not clean.leak["leak_suspected"], clean.leak


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="calls must be an integer >= 1, got 0"):
        profile_calculator(EMT(), copper(), calls=0)
    with pytest.raises(ValueError, match=r"accepted are energy, forces \(required\) and stress"):
        profile_calculator(EMT(), copper(), properties=("energy", "magmoms"))
    with pytest.raises(ValueError, match=r"cannot handle element\(s\) Si"):
        profile_calculator(EMT(), bulk("Si", "diamond", a=5.43))
