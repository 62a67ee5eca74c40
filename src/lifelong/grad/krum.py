"""Krum (Blanchard et al. 2017): keep the gradient(s) closest to their nearest neighbours, drop outliers."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_count
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator


def krum_weights(G: Tensor, n_byzantine: int = 0, n_selected: int = 1) -> Tensor:
    """Multi-Krum weights: 1/m on the m rows of lowest score, 0 elsewhere ("Machine Learning with
    Adversaries: Byzantine Tolerant Gradient Descent", Blanchard et al. 2017).

    The score of g_i is the sum of its squared distances ‖g_i − g_j‖² = G_ii + G_jj − 2G_ij to its
    k − f − 2 nearest other rows; equal scores go to the lower index (a stable sort), so the
    choice is deterministic but not invariant to reordering the tasks.
    """
    k, f, m = len(G), n_byzantine, n_selected
    check_krum(k, f, m)
    sq = G.diagonal()
    dist = (sq[:, None] + sq[None, :] - 2 * G).clamp_min(0)
    dist.fill_diagonal_(float("inf"))
    scores = dist.sort(dim=1).values[:, : k - f - 2].sum(1)
    chosen = scores.sort(stable=True).indices[:m]
    w = torch.zeros(k, dtype=G.dtype)
    w[chosen] = 1.0 / m
    return w


def check_krum(k: int, f: int, m: int) -> None:
    """Raise unless Krum can score k gradients with f Byzantine ones and average m of them."""
    if k - f - 2 < 1:
        raise IncompatibleError(f"Krum scores each task gradient by its k - f - 2 nearest others, so it needs "
                                f"k >= f + 3 = {f + 3} tasks; got k = {k} with n_byzantine f = {f}. Give it more "
                                "tasks (or a lower n_byzantine), or use another aggregator (mean, mgda)")
    if m > k - f:
        raise IncompatibleError(f"Krum: n_selected = {m} exceeds k - f = {k - f} (k = {k} tasks, n_byzantine "
                                f"f = {f}), so Byzantine gradients could be averaged in; lower n_selected")


@AGGREGATORS.register("krum", aliases=("Krum", "multi_krum", "MultiKrum", "Multi-Krum"),
                      paper="Blanchard et al. 2017")
class Krum(GramianAggregator):
    """Krum, and Multi-Krum when `n_selected` m > 1: the mean of the m task gradients closest to their
    k − f − 2 nearest neighbours (Blanchard et al. 2017), robust to f = `n_byzantine` outliers.

    Defaults f = 0 and m = 1 (plain Krum; TorchJD requires f). Scores use squared distances as in the
    paper (TorchJD sums plain distances). It needs k ≥ f + 3 tasks to score anything and refuses
    fewer (IncompatibleError); the paper's resilience guarantee further asks 2f + 2 < k.
    """

    def __init__(self, n_byzantine: int = 0, n_selected: int = 1) -> None:
        super().__init__()
        self.n_byzantine = check_count("Krum: n_byzantine", n_byzantine, allow_zero=True)
        self.n_selected = check_count("Krum: n_selected", n_selected)

    def check_tasks(self, k: int) -> None:
        check_krum(k, self.n_byzantine, self.n_selected)

    def weights(self, G: Tensor) -> Tensor:
        return krum_weights(G, self.n_byzantine, self.n_selected)
