"""Mean: the average of the task gradients (equal weighting, 1/k each)."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator


def mean_weights(G: Tensor) -> Tensor:
    """w = (1/k, …, 1/k)."""
    return torch.full((len(G),), 1.0 / len(G), dtype=G.dtype)


@AGGREGATORS.register("mean", paper="equal weighting (TorchJD's Mean)")
class Mean(GramianAggregator):
    """The mean of the task gradients."""

    def combination(self, k: int) -> Tensor:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
