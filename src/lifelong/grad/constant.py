"""Constant: fixed, user-given task weights (TorchJD's Constant): the update is wᵀJ at every step."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from lifelong.core.checks import check_vector
from lifelong.core.errors import ShapeMismatchError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator


def check_weight_count(weights: Tensor, k: int) -> None:
    """Raise unless there is one weight per task."""
    if len(weights) != k:
        raise ShapeMismatchError(f"Constant: {len(weights)} weights {weights.tolist()} for {k} tasks "
                                 "(rows of the Jacobian); give one weight per task")


def constant_update(J: Tensor, weights: Tensor) -> Tensor:
    """d = Σ_i w_i g_i; raise unless there is one weight per row of J."""
    check_weight_count(weights, len(J))
    return weights.to(dtype=J.dtype, device=J.device) @ J


@AGGREGATORS.register("constant", aliases=("Constant",), paper="fixed weighting (TorchJD's Constant)")
class Constant(Aggregator):
    """A fixed linear combination of the task gradients: `weights` (one float per task) is required."""

    def __init__(self, weights: Sequence[float] | Tensor) -> None:
        super().__init__()
        self.register_buffer("task_weights", check_vector("Constant: weights", weights), persistent=False)

    def check_tasks(self, k: int) -> None:
        check_weight_count(self.task_weights, k)

    def combination(self, k: int) -> Tensor:
        check_weight_count(self.task_weights, k)
        return self.task_weights.clone()

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        return self.weigh(self.combination(len(J)), J)
