"""Teachers: the slow, accurate ASE calculators a student is distilled from.

``get_teacher("sevennet-0" | "chgnet" | "emt", device=...)`` builds a named teacher; any
``ase.calculators.calculator.BaseCalculator`` instance (MACE, Orb, FeNNol, …) is accepted as
it is. Named teachers come from pip extras whose wheels carry their weights, so nothing is
downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, Calculator, all_changes
from ase.data import chemical_symbols

__all__ = [
    "TEACHERS",
    "SevenNetTeacher",
    "TorchSimTeacher",
    "get_teacher",
    "teacher_name",
    "check_teacher_elements",
]

# Elements the named teachers were trained on (EMT: ASE's parametrisation).
_EMT_ELEMENTS = ("H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
# SevenNet-0 lists its elements in ``type_map``; a teacher that says nothing is not checked here
# and fails on its own terms.
TEACHERS = {
    "emt": "ASE's EMT (built in; H C N O Al Ni Cu Pd Ag Pt Au)",
    "sevennet-0": "SevenNet-0 (pip install 'mlff[sevennet]')",
    "chgnet": "CHGNet (pip install 'mlff[chgnet]')",
}


class TorchSimTeacher(Calculator):
    """A torch-sim model (``ModelInterface``: MACE, SevenNet, Orb, … as torch-sim wraps them)
    as a teacher: ``label_batch`` labels many structures in one model call, which the label
    store uses with ``teacher_batch`` > 1; as an ASE calculator it labels one (physics checks,
    validation MD). Energies eV, forces eV/Å, stress eV/Å³ (Voigt, 3D-periodic cells only)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, name: str | None = None):
        super().__init__()
        self.model = model
        self.store_name = name or type(model).__name__  # ASE's ``name`` is read-only

    def label_batch(self, structures: Sequence[Atoms]) -> list[dict]:
        """Energy, forces and (periodic cells) stress of each structure, from one call."""
        import torch
        import torch_sim as ts

        from mlff.protocol import voigt

        state = ts.io.atoms_to_state(list(structures), self.model.device, self.model.dtype)
        out = self.model(state)
        system = state.system_idx.cpu().numpy()
        labels = []
        for k, atoms in enumerate(structures):
            result = {
                "energy": float(out["energy"][k]),
                "forces": out["forces"][torch.from_numpy(system == k)].detach().cpu().numpy(),
            }
            result["free_energy"] = result["energy"]
            if atoms.pbc.all() and "stress" in out:
                stress = out["stress"][k].detach().cpu().double().numpy()
                result["stress"] = np.asarray(voigt(stress))
            labels.append(result)
        return labels

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = self.label_batch([self.atoms])[0]


class SevenNetTeacher(Calculator):
    """SevenNet-0 as a teacher: its ASE calculator for single structures, and ``label_batch``
    for many in one model call (the batched graphs SevenNet is trained on), which the label
    store uses with ``teacher_batch`` > 1."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, calculator):
        super().__init__()
        self.single = calculator
        self.type_map = getattr(calculator, "type_map", None)  # for check_teacher_elements

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.single.calculate(self.atoms, properties, system_changes)
        self.results = {k: self.single.results[k] for k in self.implemented_properties}

    def label_batch(self, structures: Sequence[Atoms]) -> list[dict]:
        """Energy, forces and (periodic cells) stress of each structure from one batched
        call, converted as SevenNet's calculator converts a single structure's."""
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        single = self.single
        data = [
            AtomGraphData.from_numpy_dict(
                unlabeled_atoms_to_graph(atoms, single.cutoff, with_shift=False)
            )
            for atoms in structures
        ]
        batch = Batch.from_data_list(data).to(single.device)
        single.model.set_is_batch_data(True)
        try:
            out = single.model(batch)
        finally:
            single.model.set_is_batch_data(False)
        owner = out[KEY.BATCH].detach().cpu().numpy()
        forces = out[KEY.PRED_FORCE].detach().cpu().numpy()
        labels = []
        for k, atoms in enumerate(structures):
            energy = float(out[KEY.PRED_TOTAL_ENERGY][k])
            result = {"energy": energy, "free_energy": energy, "forces": forces[owner == k]}
            if atoms.pbc.all():  # SevenNet's (xx, yy, zz, xy, yz, zx), negated, to ASE's Voigt
                stress = -out[KEY.PRED_STRESS][k].detach().cpu().numpy()
                result["stress"] = stress[[0, 1, 2, 4, 5, 3]].astype(float)
            labels.append(result)
        return labels


def _is_torchsim_model(teacher) -> bool:
    try:
        from torch_sim.models.interface import ModelInterface
    except ImportError:
        return False
    return isinstance(teacher, ModelInterface)


def get_teacher(teacher, device: str = "cpu") -> BaseCalculator:
    """A teacher calculator by name, ``teacher`` itself if it is already an ASE calculator, or
    a :class:`TorchSimTeacher` around a torch-sim model."""
    if isinstance(teacher, BaseCalculator):
        return teacher
    if _is_torchsim_model(teacher):
        return TorchSimTeacher(teacher)
    name = str(teacher).lower()
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if name in ("sevennet-0", "7net-0", "sevennet"):
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError:
            raise ImportError(
                "the SevenNet-0 teacher needs the sevenn package: pip install 'mlff[sevennet]'"
            ) from None
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            return SevenNetTeacher(SevenNetCalculator("7net-0", device=device))
    if name == "chgnet":
        try:
            from chgnet.model.dynamics import CHGNetCalculator
        except ImportError:
            raise ImportError(
                "the CHGNet teacher needs the chgnet package: pip install 'mlff[chgnet]'"
            ) from None
        return CHGNetCalculator(use_device=device)
    raise ValueError(
        f"unknown teacher {teacher!r}; named teachers: {', '.join(TEACHERS)}, "
        "or pass an ASE calculator"
    )


def teacher_name(teacher: str | BaseCalculator) -> str:
    """A stable name for the store: the preset name, or the calculator's class name."""
    if isinstance(teacher, str):
        return teacher.lower()
    if isinstance(teacher, TorchSimTeacher):
        return teacher.store_name
    return type(teacher).__name__


def _supported(teacher: BaseCalculator) -> tuple[str, ...] | None:
    """The elements a calculator knows, where it says; None if it does not say."""
    from ase.calculators.emt import EMT

    if isinstance(teacher, EMT):
        return _EMT_ELEMENTS
    if type(teacher).__name__ == "CHGNetCalculator":  # CHGNet embeds Z = 1 … 94
        return tuple(chemical_symbols[1:95])
    type_map = getattr(teacher, "type_map", None)  # SevenNet: atomic number → model index
    if isinstance(type_map, dict) and type_map:
        return tuple(chemical_symbols[int(z)] for z in sorted(type_map))
    return None


def check_teacher_elements(teacher: BaseCalculator, elements: Iterable[str]) -> None:
    """Raise ``ValueError`` naming any element the teacher cannot do (when it says which it can)."""
    supported = _supported(teacher)
    if supported is None:
        return
    missing = [e for e in elements if e not in supported]
    if missing:
        raise ValueError(
            f"teacher {type(teacher).__name__} cannot do element(s) {', '.join(missing)}; "
            f"it knows: {', '.join(supported)}"
        )
