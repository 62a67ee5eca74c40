"""Trimmed mean (Yin et al. 2018): per coordinate, drop the b largest and b smallest values, average the rest."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_count
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator


def check_trim(k: int, b: int) -> None:
    """Raise unless k task values per coordinate leave some after dropping b at each end."""
    if k <= 2 * b:
        raise IncompatibleError(f"TrimmedMean drops the {b} largest and {b} smallest of the k task values "
                                f"of each parameter, so it needs k > 2b = {2 * b} tasks; got k = {k}. "
                                "Lower trim_number")


def trimmed_mean(J: Tensor, trim_number: int = 0) -> tuple[Tensor, Tensor]:
    """Coordinate-wise trimmed mean of the rows of J and the fraction of each row's entries kept
    ("Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", Yin et al. 2018).

    For each parameter the k task values are sorted, the b smallest and b largest dropped and the
    k − 2b others averaged; equal values are ordered by task index (a stable sort).
    """
    k, b = len(J), trim_number
    check_trim(k, b)
    if b == 0:
        return J.mean(0), torch.ones(k, dtype=J.dtype, device=J.device)
    values, order = J.T.contiguous().sort(dim=1, stable=True)  # rows of k values sort twice as fast
    kept = torch.zeros_like(J).scatter_(0, order[:, b:k - b].T, 1.0)
    return values[:, b:k - b].mean(1), kept.mean(1)


@AGGREGATORS.register("trimmed_mean", aliases=("TrimmedMean", "trimmed-mean"), paper="Yin et al. 2018")
class TrimmedMean(Aggregator):
    """Coordinate-wise trimmed mean of the task gradients (Yin et al. 2018), robust to b outliers.

    `trim_number` b defaults to 0, the plain mean (TorchJD's TrimmedMean has no default; the paper
    sets b = βk for a fraction β of corrupted rows). It needs k > 2b tasks. `last_weights` reports
    the fraction of each task's entries kept.
    """

    def __init__(self, trim_number: int = 0) -> None:
        super().__init__()
        self.trim_number = check_count("TrimmedMean: trim_number", trim_number, allow_zero=True)

    def check_tasks(self, k: int) -> None:
        check_trim(k, self.trim_number)

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        update, kept = trimmed_mean(J, self.trim_number)
        self.last_weights = kept.detach()
        return update
