"""One thread per test where the machine is shared: runs stay fast and deterministic."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Imported by a test module (directly or through a helpers module), it runs each of its
    tests on one thread and restores the thread count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
