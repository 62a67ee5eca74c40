"""Random gradient weighting, RGW (Lin et al. 2022): weights softmax(z), z ~ N(0, I), each step."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GeneratorState, GramianAggregator


def random_weights(k: int, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float64) -> Tensor:
    """softmax of k standard normal draws: random weights on the simplex (Lin et al. 2022)."""
    return torch.softmax(torch.randn(k, generator=generator, dtype=dtype), dim=0)


@AGGREGATORS.register("rgw", aliases=("random",), paper="Lin et al. 2022")
class RGW(GramianAggregator):
    """RGW: a random convex combination of the task gradients ("Reasonable Effectiveness of Random
    Weighting: A Litmus Test for Multi-Task Learning", Lin et al. 2022; TorchJD's Random)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.rng = GeneratorState(generator)

    def combination(self, k: int) -> Tensor:
        return random_weights(k, self.rng.generator)
