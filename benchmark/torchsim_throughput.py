"""Batched MD throughput of a student through torch-sim, against the CPU kernel path run
system by system in ASE.

    python benchmark/torchsim_throughput.py [--batches 1,4,16,64,256] [--steps 10]
                                            [--device cpu|cuda] [--json OUT]

Each system is a rattled 64-atom diamond-Si cell; the student is the default Si architecture
fitted to Stillinger–Weber (``lammps_snap.sw_si_student``, so the MD is physical) or
``--student PATH``. torch-sim runs velocity-Verlet NVE (``ts.nve``) on the whole batch; the
reference runs ASE ``VelocityVerlet`` with the student's ``SiteCalculator`` (the compiled CPU
kernels) on each system in turn. Throughput is atoms × steps per second of wall time, median
of ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch_sim as ts  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from mlff import SiteCalculator  # noqa: E402
from mlff.io import atomic_write, load_model  # noqa: E402
from mlff.thermal import thermalize  # noqa: E402
from mlff.torchsim import MlffModel  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "torchsim_throughput.json"


def cells(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
        atoms.rattle(0.03, seed=int(rng.integers(2**31)) + k)
        thermalize(atoms, 300.0, rng=rng)
        out.append(atoms)
    return out


def torchsim_rate(model, systems, steps: int, device: str) -> float:
    """atoms·steps/s of ts.nve on the whole batch (the first step, which builds, untimed)."""
    sim = MlffModel(model, device=device, compute_stress=False)
    state = ts.io.atoms_to_state(systems, torch.device(device), torch.float64)
    dt = torch.tensor(ts.units.MetalUnits.time / 1000, dtype=torch.float64, device=device)
    kT = torch.tensor(300 * ts.units.MetalUnits.temperature, dtype=torch.float64, device=device)
    init_fn, update_fn = ts.nve(model=sim, dt=dt, kT=kT, seed=0)
    md = update_fn(init_fn(state), dt=dt)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        md = update_fn(md, dt=dt)
    if device == "cuda":
        torch.cuda.synchronize()
    return sum(len(a) for a in systems) * steps / (time.perf_counter() - start)


def kernel_rate(model, systems, steps: int) -> float:
    """atoms·steps/s of ASE VelocityVerlet with the compiled kernels, system by system."""
    runs = []
    for atoms in systems:
        atoms = atoms.copy()
        atoms.calc = SiteCalculator(model)
        dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
        dyn.run(1)
        runs.append(dyn)
    start = time.perf_counter()
    for dyn in runs:
        dyn.run(steps)
    return sum(len(d.atoms) for d in runs) * steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", help="run directory or student.json (default: SW-fitted Si)")
    p.add_argument("--batches", default="1,4,16,64,256")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.steps < 1 or args.rounds < 1 or min(batches) < 1:
        p.error("--steps, --rounds and every batch size must be positive")
    torch.set_num_threads(args.threads)
    if args.student:
        model = load_model(args.student)[0]
    else:
        import lammps_snap

        model = lammps_snap.sw_si_student()
    rows = []
    for n in batches:
        systems = cells(n)
        samples = {"torchsim": [], "kernels": []}
        for _ in range(args.rounds):
            samples["torchsim"].append(torchsim_rate(model, systems, args.steps, args.device))
            samples["kernels"].append(kernel_rate(model, systems[: min(n, 16)], args.steps))
        median = {k: statistics.median(v) for k, v in samples.items()}
        rows.append({"systems": n, "atoms": 64 * n, "samples": samples, "median": median})
        print(
            f"{n:4d} × 64 atoms: torch-sim ({args.device}) {median['torchsim']:10.0f} "
            f"atoms·steps/s   kernels system by system {median['kernels']:10.0f}   "
            f"ratio {median['torchsim'] / median['kernels']:.2f}"
        )
    report = {
        "device": args.device,
        "threads": args.threads,
        "torch_sim": importlib.metadata.version("torch-sim-atomistic"),
        "steps": args.steps,
        "rounds": args.rounds,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1)
    atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
