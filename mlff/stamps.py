"""Stamps that say whether a cache made from a tensor still holds: the one rule the
models' per-call caches share."""

from __future__ import annotations

import torch

__all__ = ["tensor_stamp", "is_current"]


def tensor_stamp(tensor: torch.Tensor) -> tuple:
    """(tensor, version, address of its memory, a view of that memory) for a cache made from
    ``tensor``'s current values. In-place edits bump the version; ``module.float()`` and
    ``.double()`` keep a parameter's object and version but swap its memory, whose address the
    held view keeps from being reused. Inference tensors keep no version: their stamp is never
    current."""
    version = None if tensor.is_inference() else tensor._version
    return tensor, version, tensor.data_ptr(), tensor.detach()


def is_current(stamp: tuple | None, tensor: torch.Tensor) -> bool:
    """Whether ``stamp`` (from :func:`tensor_stamp`) still describes ``tensor``: the same
    object and memory, with no in-place edit since. Two attribute reads of the tensor: MD
    checks several stamps every step, and each call into torch costs about a microsecond
    there."""
    # The same object stamped with a version is no inference tensor (they have none).
    return (stamp is not None and stamp[0] is tensor and stamp[1] is not None and stamp[1] == tensor._version
            and stamp[2] == tensor.data_ptr())
