"""Fixtures shared by the whole suite; the structures and models live in helpers.py."""

import numpy as np
import pytest
import torch
from ase import Atoms
from helpers import MODEL_FACTORIES, STRUCTURES


@pytest.fixture(params=sorted(STRUCTURES))
def structure(request) -> Atoms:
    return STRUCTURES[request.param]()


@pytest.fixture(params=["pair", "ace", "stack"])
def model(request):
    """Models with non-trivial forces (OneBody's are zero and tested on their own)."""
    return MODEL_FACTORIES[request.param]()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)
