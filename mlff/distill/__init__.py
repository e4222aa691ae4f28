"""Distillation: teacher labels in a store, fitted students, committee-driven selection."""

from mlff.distill.store import LabelStore, structure_hash

__all__ = ["LabelStore", "structure_hash"]
