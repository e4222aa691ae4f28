"""Site models: one-body reference, pair potential and many-body ACE."""

from mlff.models.ace import ACEModel
from mlff.models.onebody import OneBody
from mlff.models.pair import PairModel
from mlff.models.repulsion import ZBLRepulsion

__all__ = ["OneBody", "PairModel", "ACEModel", "ZBLRepulsion"]
