"""What bf16/fp16 autocast would cost a distilled student in accuracy.

    python benchmark/autocast_accuracy.py RUN_DIR [--atoms 64] [--device cpu|cuda] [--json OUT]

``torch.autocast`` does not run on the torch path as it stands: it returns bf16/fp16 products
that the float32 scatters (``index_add``) refuse. Its numerical effect is what matters first,
so this script reproduces it: every float32 matrix product (``matmul``, ``mm``, ``bmm``,
``einsum``, the ops autocast lowers) gets its inputs rounded to bf16 or fp16, accumulates as
the GPU libraries do, and returns float32; everything else stays float32. It prints the force
(meV/Å), energy (meV/atom) and stress (GPa) differences from float64 on rattled Si cells.
The issue's bar for a reduced precision is a force error <= 1 meV/Å.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from ase import units
from torch.overrides import TorchFunctionMode

from mlff import DistilledCalculator
from mlff.distill import seed_structure, supercell

MATRIX_PRODUCTS = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.mm,
    torch.Tensor.mm,
    torch.bmm,
    torch.Tensor.bmm,
    torch.einsum,
}


class LowPrecisionProducts(TorchFunctionMode):
    """Rounds the inputs of float32 matrix products to ``dtype``; the result comes back float32."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        floats = [
            a
            for a in (*args, *kwargs.values())
            if isinstance(a, torch.Tensor) and a.is_floating_point()
        ]
        if func in MATRIX_PRODUCTS and floats and all(a.dtype == torch.float32 for a in floats):
            self.calls += 1
            low = [
                a.to(self.dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                for a in args
            ]
            return func(*low, **kwargs).to(torch.float32)
        return func(*args, **kwargs)


def evaluate(calc, atoms, mode: LowPrecisionProducts | None):
    a = atoms.copy()
    a.calc = calc
    if mode is None:
        return a.get_potential_energy(), a.get_forces(), a.get_stress()
    with mode:
        return a.get_potential_energy(), a.get_forces(), a.get_stress()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="student run directory or student.json")
    p.add_argument("--atoms", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="write the table here")
    args = p.parse_args()
    reference = DistilledCalculator(checkpoint_path=args.run)
    student32 = DistilledCalculator(
        checkpoint_path=args.run, dtype=torch.float32, backend="torch", device=args.device
    )
    rows = []
    for sigma in (0.05, 0.1, 0.2):
        atoms = supercell(seed_structure("Si-diamond"), args.atoms)
        atoms.positions += np.random.default_rng(1).normal(0, sigma, atoms.positions.shape)
        e0, f0, s0 = evaluate(reference, atoms, None)
        for name, mode in (
            ("float32", None),
            ("bf16 products", LowPrecisionProducts(torch.bfloat16)),
            ("fp16 products", LowPrecisionProducts(torch.float16)),
        ):
            student32.reset()
            e, f, s = evaluate(student32, atoms, mode)
            df = 1e3 * (f - f0)
            rows.append(
                {
                    "rattle_A": sigma,
                    "precision": name,
                    "products_rounded": mode.calls if mode else 0,
                    "force_rms_meV_per_A": float(np.sqrt(np.mean(df**2))),
                    "force_max_meV_per_A": float(np.abs(df).max()),
                    "energy_meV_per_atom": 1e3 * abs(e - e0) / len(atoms),
                    "stress_max_GPa": float(np.abs(s - s0).max() / units.GPa),
                    "force_rms_eV_per_A": float(np.sqrt(np.mean(f0**2))),
                }
            )
            r = rows[-1]
            print(
                f"rattle {sigma:.2f} Å  {name:14s} force RMS {r['force_rms_meV_per_A']:9.3f} max "
                f"{r['force_max_meV_per_A']:9.3f} meV/Å  "
                f"energy {r['energy_meV_per_atom']:8.4f} meV/atom  "
                f"stress {r['stress_max_GPa']:.5f} GPa",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "atoms": args.atoms, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
