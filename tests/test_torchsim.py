"""mlff.torchsim.MlffModel against torch-sim's own validator and against SiteCalculator:
batched states of mixed sizes and elements, float32 and float64, open boundaries, and
batched NVE MD step by step against per-system ASE MD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet

ts = pytest.importorskip("torch_sim")

from torch_sim.models.interface import validate_model_outputs  # noqa: E402

from mlff import SiteCalculator, save_model  # noqa: E402
from mlff.models.default import default_stack  # noqa: E402
from mlff.testing import random_linear_parameters  # noqa: E402
from mlff.torchsim import MlffModel  # noqa: E402

ACE = {"n_max": 6, "max_degree": {1: 6, 2: 8, 3: 8}}
PAIR = {"n_max": 6, "repulsion": True}


def _student(elements=("Fe", "Si")):
    """A default-architecture stack with random readouts of sensible size."""
    model = default_stack(
        list(elements), {e: -1.0 - k for k, e in enumerate(elements)}, 4.5, ACE, PAIR
    )
    probe = bulk("Si", "diamond", a=5.43, cubic=True)
    probe.symbols[::2] = elements[0]
    probe.symbols[1::2] = elements[1]
    probe.rattle(0.1, seed=1)
    random_linear_parameters(model, probe, energy_scale=0.3, seed=2)
    return model


def _systems():
    """Cells of 8, 16 and 24 atoms; one pure Si, two mixed."""
    out = []
    for k in range(3):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((1, 1, k + 1))
        atoms.rattle(0.05, seed=k)
        if k:
            atoms.symbols[:: k + 2] = "Fe"
        out.append(atoms)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_sims_validator_passes(dtype):
    validate_model_outputs(MlffModel(_student(), dtype=dtype), torch.device("cpu"), dtype)


def test_a_batch_equals_the_ase_calculator_system_by_system():
    model = _student()
    sim = MlffModel(model)
    systems = _systems()
    state = ts.io.atoms_to_state(systems, torch.device("cpu"), torch.float64)
    positions = state.positions.clone()
    out = sim(state)
    assert torch.equal(state.positions, positions)  # the input is not changed
    assert not any(v.requires_grad for v in out.values())
    calc = SiteCalculator(model)
    first = 0
    for k, atoms in enumerate(systems):
        atoms.calc = calc
        n = len(atoms)
        assert abs(out["energy"][k].item() - atoms.get_potential_energy()) < 1e-10
        forces = out["forces"][first : first + n].numpy()
        np.testing.assert_allclose(forces, atoms.get_forces(), rtol=0, atol=1e-10)
        stress = out["stress"][k].numpy()
        np.testing.assert_allclose(stress, atoms.get_stress(voigt=False), rtol=0, atol=1e-12)
        first += n


def test_open_boundaries_and_flags():
    model = _student(("H", "C"))
    sim = MlffModel(model, compute_stress=False)
    mols = [molecule("CH4"), molecule("C2H6")]
    for mol in mols:
        mol.rattle(0.02, seed=3)
        mol.cell = [10.0, 10.0, 10.0]
        mol.pbc = False
    state = ts.io.atoms_to_state(mols, torch.device("cpu"), torch.float64)
    out = sim(state)
    assert "stress" not in out
    calc = SiteCalculator(model)
    first = 0
    for k, mol in enumerate(mols):
        mol.calc = calc
        assert abs(out["energy"][k].item() - mol.get_potential_energy()) < 1e-10
        np.testing.assert_allclose(
            out["forces"][first : first + len(mol)].numpy(), mol.get_forces(), atol=1e-10
        )
        first += len(mol)
    sim.compute_forces = False
    energy_only = sim(state)
    assert set(energy_only) == {"energy"}
    torch.testing.assert_close(energy_only["energy"], out["energy"])


def test_a_run_directory_loads_and_unknown_elements_are_named(tmp_path):
    model = _student()
    save_model(model, tmp_path / "student.json")
    sim = MlffModel(tmp_path)
    state = ts.io.atoms_to_state([bulk("Cu", "fcc", a=3.6)], torch.device("cpu"), torch.float64)
    with pytest.raises(ValueError, match="the state has Cu, which the model does not know"):
        sim(state)
    with pytest.raises(TypeError, match="model must be"):
        MlffModel(42)


def test_batched_nve_equals_per_system_ase_md_for_20_steps():
    """torch-sim's velocity Verlet on three systems of mixed sizes and elements, and ASE's
    VelocityVerlet on each alone, from the same momenta: the same positions at every step."""
    model = _student()
    sim = MlffModel(model)
    systems = _systems()
    state = ts.io.atoms_to_state(systems, torch.device("cpu"), torch.float64)
    dt = torch.tensor(1.0 * ts.units.MetalUnits.time / 1000, dtype=torch.float64)  # 1 fs
    init_fn, update_fn = ts.nve(
        model=sim, dt=dt, kT=torch.tensor(300 * ts.units.MetalUnits.temperature), seed=7
    )
    md = init_fn(state)
    momenta = md.momenta.clone()  # amu·Å per internal time unit: ASE's own units
    trajectories = []
    first = 0
    for atoms in systems:
        atoms = atoms.copy()
        n = len(atoms)
        atoms.set_momenta(momenta[first : first + n].numpy())
        atoms.calc = SiteCalculator(model)
        dyn = VelocityVerlet(atoms, timestep=float(dt))
        steps = []
        dyn.attach(lambda a=atoms, s=steps: s.append(a.get_positions().copy()), interval=1)
        dyn.run(20)
        trajectories.append((first, n, steps[1:], atoms.cell.array))  # after each step
        first += n
    for step in range(20):
        md = update_fn(md, dt=dt)
        for first, n, steps, cell in trajectories:
            # torch-sim wraps positions into the cell: compare them modulo lattice vectors
            diff = md.positions[first : first + n].numpy() - steps[step]
            frac = diff @ np.linalg.inv(cell)
            diff = (frac - np.round(frac)) @ cell
            assert np.abs(diff).max() < 1e-9, (step, np.abs(diff).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    model = _student()
    state = ts.io.atoms_to_state(_systems(), torch.device("cuda"), torch.float64)
    gpu = MlffModel(model, device="cuda")(state)
    cpu = MlffModel(_student())(
        ts.io.atoms_to_state(_systems(), torch.device("cpu"), torch.float64)
    )
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-9, atol=1e-9)
