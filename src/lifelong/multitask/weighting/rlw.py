"""Random loss weighting (Lin et al. 2022): fresh weights softmax(z), z ~ N(0, I), every step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.core.registries import WEIGHTINGS
from lifelong.grad.base import GeneratorState
from lifelong.grad.rgw import random_weights
from lifelong.multitask.weighting.base import LossWeighting


@WEIGHTINGS.register("rlw", aliases=("RLW", "random_loss"), kind="loss", paper="Lin et al. 2022")
class RLW(LossWeighting):
    """L = Σ_t λ_t L_t with λ = softmax(z), z ~ N(0, I) drawn from `generator` each step ("Reasonable
    Effectiveness of Random Weighting", Lin et al. 2022); the generator's state is in state_dict.
    With a task sampler the weights are the softmax of the drawn tasks' z alone (k draws each step
    either way)."""

    def __init__(self, n_tasks: int, generator: torch.Generator | None = None) -> None:
        super().__init__(n_tasks)
        self.rng = GeneratorState(generator)

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        w = random_weights(self.n_tasks, self.rng.generator).to(losses) * present
        w = w / w.sum()
        return (w * losses).sum(), w
