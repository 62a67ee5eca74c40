"""Shared checks for the aggregator tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch


@pytest.fixture
def resumes(roundtrip):
    """check(build, calls): an aggregator from `build()` called with calls[0] and calls[1], saved and
    loaded into a new one, answers calls[2:] bit-identically, and a fresh one does not (the state
    matters); returns the saved state."""
    def check(build: Callable[[], torch.nn.Module], calls: Sequence[tuple]) -> dict:
        first = build()
        for args in calls[:2]:
            first(*args)
        state = roundtrip(first)
        expected = [first(*args) for args in calls[2:]]
        resumed = build()
        resumed.load_state_dict(state)
        for args, want in zip(calls[2:], expected, strict=True):
            torch.testing.assert_close(resumed(*args), want, rtol=0, atol=0)
        assert not torch.equal(build()(*calls[2]), expected[0])
        return state

    return check


@pytest.fixture
def loss_steps() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Five seeded steps of (J (3 tasks × 4), positive task losses (3,)) for aggregators of J and losses."""
    gen = torch.Generator().manual_seed(2)
    return [(torch.randn(3, 4, generator=gen, dtype=torch.float64),
             torch.rand(3, generator=gen, dtype=torch.float64) + 0.1) for _ in range(5)]


@pytest.fixture
def sample_stacks() -> list[tuple[torch.Tensor]]:
    """Five seeded stacks of three independent Jacobians (3 samples × 4 tasks × 6), for MoDo and SDMGrad."""
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(3, 4, 6, generator=gen, dtype=torch.float64),) for _ in range(5)]
