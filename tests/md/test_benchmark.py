"""run_benchmark against calculators whose behaviour is known: a harmonic crystal (exact
energy fluctuation of velocity Verlet, exact ideal-gas pressure), sleeps of known length, a
deliberate leak; plus the JSON schema round trip and refusal of bad input."""

import json

import numpy as np
import pytest
from ase import units
from ase.build import molecule
from ase.calculators.emt import EMT
from md_helpers import PageLeak, Slow, harmonic_copper

from mlff import OneBody, PairModel, StackedCalculator
from mlff.md import BenchmarkResult, BenchmarkSettings, check_schema, run_benchmark
from mlff.md.ensembles import initialize_velocities


def test_nve_fluctuation_of_a_harmonic_crystal_matches_the_verlet_shadow_energy():
    # Velocity Verlet conserves p²/2m + (1 − (ωh)²/4) U exactly for an oscillator, so the total
    # energy E = p²/2m + U oscillates as (ωh)²/4 · U(t). All 96 oscillators share ω, so the
    # oscillating part of U_tot is ½mω²(C cos 2ωt + S sin 2ωt) with C, S from the start state;
    # its rms is that amplitude / √2. No drift: least squares over many periods of 2ω turns an
    # oscillation of rms σ into a slope of about 12√2 σ / (2ω T²) ≈ 0.02 σ per ps here.
    atoms, calc = harmonic_copper(k=20.0)
    result = run_benchmark(
        {"harmonic": calc},
        atoms,
        sizes=[32],
        ensembles=["nve"],
        steps=1500,
        warmup=3,
        timestep_fs=2.0,
        temperature_K=300.0,
    )
    start = atoms.copy()
    initialize_velocities(start, 300.0, seed=0)  # what the benchmark started from (seed 0)
    m = start.get_masses()[0]
    omega = np.sqrt(calc.k / m)  # 1/ASE time
    p = start.get_momenta() / (m * omega)
    x = start.positions - calc.sites
    amplitude = 0.5 * m * omega**2 * np.hypot(np.sum(x**2 - p**2) / 2, np.sum(x * p))
    h = 2.0 * units.fs
    expected = (omega * h) ** 2 / 4 * amplitude / np.sqrt(2) / len(start) * 1e3  # meV/atom
    run = result.case(32, "nve")["runs"]["harmonic"]
    assert run["energy"]["quantity"] == "total energy"
    assert run["energy"]["fluctuation_meV_atom"] == pytest.approx(expected, rel=0.05)
    assert abs(run["energy"]["drift_meV_atom_ps"]) < 0.1 * expected


def test_latency_metrics_against_known_sleeps_and_interleaving():
    atoms, harmonic = harmonic_copper()
    order: list[str] = []
    fast = Slow(harmonic, 0.002, order, "fast")
    slow = Slow(harmonic, 0.008, order, "slow")
    result = run_benchmark(
        {"teacher": slow, "student": fast},
        atoms,
        sizes=["small"],
        ensembles=["nve"],
        steps=40,
        warmup=2,
        interleave_block=5,
    )
    case = result.case("small", "nve")
    for name, delay in (("student", 0.002), ("teacher", 0.008)):
        m = case["runs"][name]
        lat = m["latency_s"]
        assert m["steps"] == 40 and len(m["series"]["latency_s"]) == 40
        assert (
            delay <= lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        )  # sleep never returns early
        assert m["steps_per_s"] <= 1.0 / delay
        assert m["us_per_atom_step"] == pytest.approx(lat["p50"] / case["n_atoms"] * 1e6)
        assert m["md_time_s"] == pytest.approx(sum(m["series"]["latency_s"]))
        assert m["first_call_s"] >= delay
    # Both pay the same MD overhead o on top of their sleep: ratio = (8 + o) / (2 + o) ∈ (2, 4].
    ratio = case["speed_ratio"]
    assert ratio["reference"] == "teacher"
    assert 2.0 < ratio["p50"]["student"] <= 4.2
    # One pre-flight call each, then interleaved in blocks of 5 steps (one force call per step,
    # after the first call of each run).
    runs = "".join("t" if label == "slow" else "s" for label in order)
    assert runs == "ts" + "t" * 6 + "s" * 6 + ("t" * 5 + "s" * 5) * 7


def test_harmonic_pressure_is_the_ideal_gas_term():
    # Zero stress from the springs: P = N k_B T / V at every sample, in GPa.
    atoms, calc = harmonic_copper()
    result = run_benchmark(
        {"harmonic": calc},
        atoms,
        sizes=["small"],
        ensembles=["bussi"],
        steps=60,
        warmup=1,
        pressure_interval=5,
    )
    m = result.case("small", "bussi")["runs"]["harmonic"]
    s = m["series"]
    steps = np.round(np.asarray(s["pressure_time_ps"]) * 1e3).astype(int)
    temperature = np.asarray(s["temperature_K"])[steps]  # sampled every step
    volume = np.asarray(s["volume_A3_per_atom"])[steps] * len(atoms)
    assert len(steps) == 13
    expected = len(atoms) * units.kB * temperature / volume / units.GPa
    np.testing.assert_allclose(s["pressure_GPa"], expected, rtol=1e-10)
    assert m["pressure_GPa"]["mean"] == pytest.approx(expected.mean())
    assert m["temperature_K"]["mean"] == pytest.approx(np.mean(s["temperature_K"]))


def test_memory_growth_is_charged_to_the_calculator_that_leaks():
    atoms, harmonic = harmonic_copper()
    leak = 256 * 1024  # bytes per call → 250 MB per 1000 steps
    result = run_benchmark(
        {"leaky": PageLeak(harmonic, leak), "clean": harmonic},
        atoms,
        sizes=["small"],
        ensembles=["nve"],
        steps=150,
        warmup=5,
        interleave_block=10,
    )
    runs = result.case("small", "nve")["runs"]
    expected = leak * 1000 / 2**20
    assert runs["leaky"]["memory"]["rss_growth_MB_per_1000_steps"] == pytest.approx(
        expected, rel=0.25
    )
    assert abs(runs["clean"]["memory"]["rss_growth_MB_per_1000_steps"]) < 0.1 * expected
    mem = runs["leaky"]["memory"]
    assert mem["rss_initial_MB"] <= mem["rss_peak_MB"] and mem["rss_final_MB"] <= mem["rss_peak_MB"]
    assert mem["cuda_allocated_peak_MB"] is None  # CPU run: CUDA never initialised


def test_json_round_trip_matches_the_schema(tmp_path):
    atoms, calc = harmonic_copper()
    result = run_benchmark(
        {"teacher": EMT(), "student": calc},
        atoms,
        sizes=["small"],
        ensembles=["nve", "npt-iso"],
        steps=6,
        warmup=1,
    )
    path = result.save(tmp_path / "out" / "bench.json")
    data = json.loads(path.read_text())
    check_schema(data)
    assert BenchmarkResult.load(path).to_dict() == data == result.to_dict()
    env = data["environment"]
    assert (
        env["packages"]["torch"] and env["packages"]["ase"] and env["machine"]["logical_cores"] >= 1
    )
    assert data["settings"]["ensembles"] == ["nve", "npt-iso"] and data["settings"]["steps"] == 6
    assert [(c["ensemble"], c["integrator"]) for c in data["cases"]] == [
        ("nve", "VelocityVerlet"),
        ("npt-iso", "IsotropicMTKNPT"),
    ]
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary file left behind

    broken = json.loads(path.read_text())
    del broken["cases"][0]["runs"]["student"]["latency_s"]["p99"]
    with pytest.raises(
        ValueError, match=r"\$\.cases\[0\]\.runs\.student\.latency_s: missing field\(s\) p99"
    ):
        BenchmarkResult.from_dict(broken)
    broken = json.loads(path.read_text())
    broken["cases"][1]["runs"]["teacher"]["steps_per_s"] = "fast"
    with pytest.raises(ValueError, match=r"steps_per_s: expected number or null, got str"):
        check_schema(broken)
    broken = json.loads(path.read_text())
    broken["schema_version"] = 99
    with pytest.raises(ValueError, match=r"\$\.schema_version: expected 1, got 99"):
        check_schema(broken)


def test_bad_input_is_refused_before_any_md():
    atoms, harmonic = harmonic_copper()
    probe = Slow(harmonic, 0.0)
    with pytest.raises(
        ValueError, match=r"unknown ensemble 'nvx'; accepted: nve \(VelocityVerlet\), langevin"
    ):
        run_benchmark({"c": probe}, atoms, sizes=["small"], ensembles=["nve", "nvx"], steps=5)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got -5"):
        run_benchmark({"c": probe}, atoms, sizes=["small"], steps=-5)
    with pytest.raises(ValueError, match=r"unknown size 'huge'; accepted: small \(32-64 atoms\)"):
        run_benchmark({"c": probe}, atoms, sizes=["huge"], steps=5)
    with pytest.raises(ValueError, match="include the same object twice"):
        run_benchmark({"a": probe, "b": probe}, atoms, sizes=["small"], steps=5)
    assert probe.calls == 0
    with pytest.raises(
        ValueError, match=r"emt \(EMT\) cannot handle element\(s\) Si in Si32; it knows: H, C"
    ):
        run_benchmark({"emt": EMT()}, "Si-diamond", sizes=["small"], steps=5)
    student = StackedCalculator([OneBody({"Si": -4.0}), PairModel(["Si"], cutoff=4.0)])
    with pytest.raises(
        ValueError,
        match=r"student \(StackedCalculator\) cannot handle element\(s\) Cu in Cu32; it knows: Si",
    ):
        run_benchmark({"student": student}, "Cu-fcc", sizes=["small"], steps=5)
    with pytest.raises(ValueError, match=r"'npt' \(MTKNPT\) needs a 3D-periodic cell"):
        run_benchmark({"emt": EMT()}, molecule("CH4"), sizes=[5], ensembles=["npt"], steps=5)


def test_sizes_and_ensembles_become_canonical_names_without_repeats():
    settings = BenchmarkSettings(
        sizes=["Small", "small", 32], ensembles=["NVE", "VelocityVerlet", "bussi"]
    )
    assert settings.sizes == ("small", 32)
    assert settings.ensembles == ("nve", "bussi")  # an integrator's class name is an alias
    assert BenchmarkSettings(sizes="large", ensembles="npt").sizes == ("large",)
    with pytest.raises(ValueError, match="give at least one size; accepted: small, medium"):
        BenchmarkSettings(sizes=[])
    with pytest.raises(ValueError, match="give at least one ensemble; accepted: nve, langevin"):
        BenchmarkSettings(ensembles=())
