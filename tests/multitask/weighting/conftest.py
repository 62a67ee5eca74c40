"""Shared helper for the loss-weighting tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


@pytest.fixture
def total_and_grad() -> Callable[[torch.nn.Module, list[float]], tuple[float, torch.Tensor]]:
    """f(weighting, losses): the total the weighting makes of `losses` and its gradient in them
    (the effective weights), in float64."""
    def combine(weighting: torch.nn.Module, losses: list[float]) -> tuple[float, torch.Tensor]:
        leaf = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
        total = weighting.combine(leaf)
        (grad,) = torch.autograd.grad(total, leaf)
        return float(total.detach()), grad

    return combine
