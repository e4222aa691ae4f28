"""Stamps that say whether a cache made from a tensor still holds: the one rule the
models' per-call caches share."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

__all__ = ["tensor_stamp", "is_current", "TensorStamps"]

_version = operator.attrgetter("_version")
_address = torch.Tensor.data_ptr


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
    return (
        stamp is not None
        and stamp[0] is tensor
        and stamp[1] is not None
        and stamp[1] == tensor._version
        and stamp[2] == tensor.data_ptr()
    )


class TensorStamps:
    """The stamps of several tensors, each named by where it lives (a module's ``_buffers`` or
    ``_parameters`` and its name), checked together by the rule of :func:`is_current`, plus
    that each place still holds the same tensor. One pass of C-level loops: an MD step checks
    every tensor its kernels read, and between the kernels each Python step costs several
    times what it costs in a warm loop."""

    def __init__(self, places: Sequence[tuple[dict, str]]):
        self._dicts = tuple(d for d, _ in places)
        self._names = tuple(name for _, name in places)
        stamps = [tensor_stamp(t) for t in map(dict.get, self._dicts, self._names)]
        self._tensors = tuple(stamp[0] for stamp in stamps)
        self._versions = tuple(stamp[1] for stamp in stamps)
        self._addresses = tuple(stamp[2] for stamp in stamps)
        self._views = tuple(stamp[3] for stamp in stamps)  # keep the addresses from reuse
        self._live = None not in self._versions  # inference tensors: never current

    def current(self) -> bool:
        tensors = tuple(map(dict.get, self._dicts, self._names))
        return (
            self._live
            and all(map(operator.is_, tensors, self._tensors))
            and tuple(map(_version, tensors)) == self._versions
            and tuple(map(_address, tensors)) == self._addresses
        )
