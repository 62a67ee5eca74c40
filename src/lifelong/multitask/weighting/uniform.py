"""Uniform (equal) weighting: the plain sum of the task losses."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting


@WEIGHTINGS.register("uniform", aliases=("EW", "equal"), kind="loss", paper="equal weighting")
class Uniform(LossWeighting):
    """L = Σ_t L_t, every weight 1 (LibMTL's EW); with a task sampler, the sum of the drawn tasks'."""

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        return losses.sum(), present.to(losses.dtype)  # absent losses arrive as 0
