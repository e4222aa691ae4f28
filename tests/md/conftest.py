"""One torch thread for the MD-tool tests: on a busy machine with few cores, torch's OpenMP
threads wait on each other and a student's call can take a hundred times longer."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
