"""Uncertainty weighting (Kendall et al. 2018): learned homoscedastic noise σ_t per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lifelong.core.checks import check_list
from lifelong.core.errors import ConfigError
from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting

# The factor of L_t / σ_t² in each likelihood: Gaussian ½, softmax with temperature σ² 1.
PRECISION_FACTOR = {"regression": 0.5, "classification": 1.0}


@WEIGHTINGS.register("uncertainty", aliases=("UW",), kind="loss", paper="Kendall et al. 2018")
class Uncertainty(LossWeighting):
    """L = Σ_t c_t L_t / σ_t² + log σ_t, c_t = ½ for regression and 1 for classification tasks
    (Kendall, Gal & Cipolla 2018, Eqs. 7 and 10); s_t = log σ_t² is learned, initialised at 0.

    `task_types` lists "regression" or "classification" per task (all regression by default).
    At the optimum of a regression task σ_t² equals its mean squared error. With a task sampler
    only the drawn tasks' terms enter the total, so an undrawn task's s_t gets no gradient.
    """

    def __init__(self, n_tasks: int, task_types: Sequence[str] | None = None) -> None:
        super().__init__(n_tasks)
        types = ["regression"] * n_tasks if task_types is None else \
            check_list("uncertainty: task_types", task_types, "a list naming each task's type")
        unknown = sorted({t for t in types} - set(PRECISION_FACTOR))
        if len(types) != n_tasks or unknown:
            raise ConfigError(f"uncertainty: task_types must list one of {sorted(PRECISION_FACTOR)} "
                              f"for each of the {n_tasks} tasks, got {types}")
        self.task_types = types
        self.register_buffer("factor", torch.tensor([PRECISION_FACTOR[t] for t in types]))
        self.log_var = nn.Parameter(torch.zeros(n_tasks))

    @property
    def sigma(self) -> Tensor:
        """The learned noise scales σ_t (k,)."""
        return (0.5 * self.log_var.detach()).exp()

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        """Σ over the present tasks of c_t L_t / σ_t² + log σ_t, and the precisions c_t / σ_t²."""
        precision = self.factor * torch.exp(-self.log_var)
        return ((precision * losses + 0.5 * self.log_var) * present).sum(), precision * present
