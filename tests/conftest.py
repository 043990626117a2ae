"""Shared test set-up: fixed seeds, a clean param store, validation on (the data folder: ../conftest.py)."""

import pyro
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture
def tiny_images():
    """48 random 8-bit 'images' of shape (1, 8, 8)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (48, 1, 8, 8), generator=g, dtype=torch.uint8)
