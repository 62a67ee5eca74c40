"""IMTL-L (Liu et al. 2021): learned loss scales that make every scaled loss equal to one."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting


@WEIGHTINGS.register("imtl_l", aliases=("IMTL-L",), kind="loss", paper="Liu et al. 2021")
class IMTLL(LossWeighting):
    """L = Σ_t e^{s_t} L_t − s_t with learned s_t (init 0): its minimum in s has e^{s_t} L_t = 1,
    so no task dominates by scale (Liu et al. 2021, "Towards Impartial Multi-task Learning");
    with a task sampler only the drawn tasks' terms count."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        self.log_scale = nn.Parameter(torch.zeros(n_tasks))

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        scale = self.log_scale.exp()
        return ((scale * losses - self.log_scale) * present).sum(), scale * present
