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
                f"bad --max-degree item {item!r}; expected ORDER=DEGREE pairs such as 1=10,2=15,3=13"
            ) from None
    return out


def _cmd_basis(args: argparse.Namespace) -> int:
    from mlff.models import ACEModel

    model = ACEModel(
        args.elements, cutoff=args.cutoff, n_max=args.n_max, l_max=args.l_max,
        max_degree=args.max_degree, w_l=args.w_l,
    )
    print(model.describe_basis())
    if args.list:
        for k, f in enumerate(model.basis_spec):
            print(f"{k:5d}  degree {f.degree:5.1f}  {f}")
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from mlff.distill.loop import DistillConfig, distill

    settings: dict = {}
    if args.config:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        with open(args.config, "rb") as handle:
            settings.update(tomllib.load(handle))
    for key in ("teacher", "structure", "out", "device", "budget", "seed"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    report = distill(DistillConfig.from_mapping(settings), progress=not args.quiet)
    from mlff.fitting import ErrorTable

    print(ErrorTable.from_dict(report["errors"]["test"]))
    speed = report["speed"]
    print(f"speed at {speed['atoms']} atoms: teacher {speed['teacher_s_per_step'] * 1e3:.1f} ms/step, "
          f"student {speed['student_s_per_step'] * 1e3:.2f} ms/step, speed-up {speed['speedup']:.0f}x")
    print(f"student written to {settings.get('out', DistillConfig.out)}/student.json")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from mlff.fitting import ErrorTable
    from mlff.io import load_model, resolve_checkpoint

    model, metadata = load_model(args.path)
    print(f"checkpoint: {resolve_checkpoint(args.path)}")
    print(f"elements: {', '.join(model.elements)}; cutoff {model.cutoff} Å; {model.length_basis()} linear parameters")
    for part in getattr(model, "parts", [model]):
        print(f"  {type(part).__name__}: {part.extra_repr()}")
    if metadata.get("teacher"):
        print(f"teacher: {metadata['teacher']}; structure: {metadata.get('structure')}; labels: {metadata.get('labels')}")
    for name, table in metadata.get("errors", {}).items():
        print(f"{name} errors:\n{ErrorTable.from_dict(table)}")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    import ase
    import e3nn
    import torch
    import vesin

    from mlff import __version__

    print(f"mlff {__version__} (torch {torch.__version__}, ase {ase.__version__}, "
          f"e3nn {e3nn.__version__}, vesin {vesin.__version__})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlff", description="Fast linear site-energy force fields.")
    sub = parser.add_subparsers(dest="command", required=True)

    basis = sub.add_parser("basis", help="show the ACE basis a set of hyper-parameters gives")
    basis.add_argument("--elements", nargs="+", required=True, help="element symbols, e.g. Si O")
    basis.add_argument("--cutoff", type=float, default=5.0, help="cutoff radius in Å (default 5.0)")
    basis.add_argument("--n-max", type=int, default=10, help="radial functions (default 10)")
    basis.add_argument("--l-max", type=int, default=4, help="largest angular degree (default 4)")
    basis.add_argument("--w-l", type=float, default=1.5, help="weight of l in the degree (default 1.5)")
    basis.add_argument("--max-degree", type=_parse_degrees, default=None,
                       help="ORDER=DEGREE pairs, e.g. 1=10,2=15,3=13 (the default)")
    basis.add_argument("--list", action="store_true", help="list every basis function")
    basis.set_defaults(func=_cmd_basis)

    dist = sub.add_parser("distill", help="distil a teacher into a fast student")
    dist.add_argument("--teacher", help="sevennet-0 | chgnet | emt (default sevennet-0)")
    dist.add_argument("--structure", help="a preset (Si-diamond, Cu-fcc, …) or a structure file")
    dist.add_argument("--out", help="run directory (resumes if it exists)")
    dist.add_argument("--config", help="TOML file with any DistillConfig setting")
    dist.add_argument("--device", help="cpu or cuda")
    dist.add_argument("--budget", type=int, help="teacher calls for training labels")
    dist.add_argument("--seed", type=int, help="random seed")
    dist.add_argument("--quiet", action="store_true", help="no progress bars")
    dist.set_defaults(func=_cmd_distill)

    info = sub.add_parser("info", help="describe a student checkpoint or run directory")
    info.add_argument("path", help="run directory, student.json, or checkpoint path")
    info.set_defaults(func=_cmd_info)

    version = sub.add_parser("version", help="print versions")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"mlff {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
