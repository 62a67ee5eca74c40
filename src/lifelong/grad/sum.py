"""Sum: the sum of the task gradients (the gradient of the summed losses)."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator


def sum_weights(G: Tensor) -> Tensor:
    """w = (1, …, 1)."""
    return torch.ones(len(G), dtype=G.dtype)


@AGGREGATORS.register("sum", paper="unweighted sum (TorchJD's Sum)")
class Sum(GramianAggregator):
    """The sum of the task gradients."""

    def combination(self, k: int) -> Tensor:
        return torch.ones(k, dtype=torch.float64)
