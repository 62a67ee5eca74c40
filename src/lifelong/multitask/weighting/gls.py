"""Geometric loss strategy, GLS (Chennupati et al. 2019): the geometric mean of the task losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.core.errors import DataError
from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting


@WEIGHTINGS.register("gls", aliases=("GLS",), kind="loss", paper="Chennupati et al. 2019")
class GLS(LossWeighting):
    """L = (Π_t L_t)^{1/k} ("MultiNet++", Chennupati et al. 2019); its effective weights
    ∂L/∂L_t = L / (k L_t) favour the tasks with small losses. Needs positive losses. With a task
    sampler, the geometric mean of the drawn tasks' losses."""

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        drawn = losses[present]
        if (drawn.detach() <= 0).any():
            raise DataError(f"GLS: the geometric mean needs positive losses, got "
                            f"{drawn.detach().tolist()}; use another weighting for losses that "
                            "can reach zero")
        total = drawn.log().mean().exp()
        weights = torch.zeros_like(losses.detach())
        weights[present] = total.detach() / (len(drawn) * drawn.detach())
        return total, weights
