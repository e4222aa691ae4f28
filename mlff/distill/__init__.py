"""Distillation: the user's domain, teacher labels in a store, fitted students, committee-driven
selection, and the physics that judges a student against its teacher."""

from mlff.distill.config import DistillConfig
from mlff.distill.loop import distill
from mlff.distill.physics import (
    CountingCalculator,
    PhysicsSettings,
    compare_physics,
    crystal_physics,
    format_physics_table,
    liquid_physics,
)
from mlff.distill.sampling import PRESETS, seed_structure, seed_structures, supercell
from mlff.distill.selection import select_by_committee
from mlff.distill.store import LabelStore, structure_hash
from mlff.distill.teachers import (
    TEACHERS,
    TorchSimTeacher,
    check_teacher_elements,
    get_teacher,
    teacher_name,
)

__all__ = [
    "DistillConfig",
    "distill",
    "LabelStore",
    "structure_hash",
    "PRESETS",
    "seed_structure",
    "seed_structures",
    "supercell",
    "select_by_committee",
    "TEACHERS",
    "TorchSimTeacher",
    "get_teacher",
    "teacher_name",
    "check_teacher_elements",
    "CountingCalculator",
    "PhysicsSettings",
    "crystal_physics",
    "liquid_physics",
    "compare_physics",
    "format_physics_table",
]
