"""Distillation: teacher labels in a store, fitted students, committee-driven selection."""

from mlff.distill.sampling import PRESETS, seed_structure, supercell
from mlff.distill.selection import select_by_committee
from mlff.distill.store import LabelStore, structure_hash
from mlff.distill.teachers import TEACHERS, check_teacher_elements, get_teacher, teacher_name

__all__ = [
    "LabelStore",
    "structure_hash",
    "PRESETS",
    "seed_structure",
    "supercell",
    "select_by_committee",
    "TEACHERS",
    "get_teacher",
    "teacher_name",
    "check_teacher_elements",
]
