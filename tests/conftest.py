"""Shared fixtures: every test is seeded, deterministic and single-threaded (xdist uses the cores)."""

from __future__ import annotations

import functools

import pytest
import torch

from lifelong.core.seeding import seed_everything

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Seed every source and turn on deterministic algorithms for the test."""
    seed_everything(0, deterministic=True)
    yield
    torch.use_deterministic_algorithms(False)


@functools.cache
def _fashion():
    from lifelong.data.sources import load_source

    return load_source("fashion-mnist", download=False)


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST from the Debian package (installed by `make test`), loaded once per worker."""
    return _fashion()
