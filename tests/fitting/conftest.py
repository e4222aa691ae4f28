"""Session fixtures of EMT-labelled Cu data."""

import pytest
from ase import Atoms
from emt_data import emt_cu_dataset


@pytest.fixture(scope="session")
def emt_train() -> list[Atoms]:
    return emt_cu_dataset(seed=0, n_each=8)


@pytest.fixture(scope="session")
def emt_test() -> list[Atoms]:
    return emt_cu_dataset(seed=1, n_each=4)
