"""Dynamic Weight Average (Liu, Johns & Davison 2019): weight tasks by how slowly their loss falls."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.core.checks import check_positive
from lifelong.core.errors import ShapeMismatchError
from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting


@WEIGHTINGS.register("dwa", aliases=("DWA",), kind="loss", paper="Liu et al. 2019")
class DWA(LossWeighting):
    """w_t = K exp(r_t / T) / Σ_i exp(r_i / T), r_t = L̄_t(e−1) / L̄_t(e−2), T = 2 (Liu et al. 2019,
    Eq. 1), where L̄_t(e) is task t's mean training loss over epoch e; w_t = 1 for the first two
    epochs. The engine reports each epoch's means through `end_epoch(mean_losses)`; the last two
    are kept in `state_dict`. With a task sampler a step weighs the drawn tasks only, and a task
    not drawn in one of the two epochs (mean NaN) has r_t = 1.
    """

    def __init__(self, n_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(n_tasks)
        self.temperature = check_positive("dwa: temperature", temperature, allow_zero=False)
        self.register_buffer("history", torch.ones(2, n_tasks, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def current_weights(self) -> Tensor:
        """The weights for the current epoch (k,), from the last two epochs' mean losses."""
        if self.epochs_seen < 2:
            return torch.ones(self.n_tasks, dtype=torch.float64, device=self.history.device)
        rate = self.history[1] / self.history[0]
        rate = torch.where(torch.isfinite(rate), rate, torch.ones_like(rate))
        return self.n_tasks * torch.softmax(rate / self.temperature, dim=0)

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        w = self.current_weights().to(losses) * present
        return (w * losses).sum(), w

    def end_epoch(self, mean_losses: Tensor) -> None:
        """Record the epoch's mean training loss per task (k,; NaN for a task not drawn in it)."""
        mean = torch.as_tensor(mean_losses, dtype=torch.float64).reshape(-1)
        if len(mean) != self.n_tasks:
            raise ShapeMismatchError(f"DWA.end_epoch: expected {self.n_tasks} mean losses, got "
                                     f"{len(mean)}")
        self.history = torch.stack([self.history[1], mean.to(self.history.device)])
        self.epochs_seen += 1
