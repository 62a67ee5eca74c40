"""MGDA (Sener & Koltun 2018): weights of the min-norm point of the convex hull of task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_count, check_flag, check_positive
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator
from lifelong.grad.cone import min_norm_weights


def two_task_weights(G: Tensor) -> Tensor:
    """Closed form for two vectors: γ = clip((G₂₂ − G₁₂) / (G₁₁ + G₂₂ − 2G₁₂), 0, 1), w = (γ, 1 − γ)."""
    denom = G[0, 0] + G[1, 1] - 2 * G[0, 1]
    gamma = ((G[1, 1] - G[0, 1]) / denom).clamp(0, 1) if denom > 0 else G.new_tensor(0.5)
    return torch.stack([gamma, 1 - gamma])


def frank_wolfe_weights(G: Tensor, max_iter: int = 250, tol: float = 1e-5) -> Tensor:
    """Sener & Koltun's Algorithm 2: Frank-Wolfe from uniform weights, exact two-point line search.

    Stops when the weights move less than `tol` (L1) or after `max_iter` steps (the values of the
    authors' code). Frank-Wolfe converges as O(1/t): prefer `mgda_weights`, which is exact.
    """
    k = len(G)
    alpha = torch.full((k,), 1.0 / k, dtype=G.dtype)
    for _ in range(max_iter):
        Ga = G @ alpha
        t = int(Ga.argmin())
        pair = torch.stack([torch.stack([alpha @ Ga, Ga[t]]), torch.stack([Ga[t], G[t, t]])])
        keep = two_task_weights(pair)[0]
        step = keep * alpha
        step[t] += 1 - keep
        moved = float((step - alpha).abs().sum())
        alpha = step
        if moved < tol:
            break
    return alpha


def mgda_weights(G: Tensor) -> Tensor:
    """Min-norm weights on the simplex: closed form for two tasks, exact NNLS solve beyond."""
    if len(G) == 1:
        return torch.ones(1, dtype=G.dtype)
    return two_task_weights(G) if len(G) == 2 else min_norm_weights(G)


@AGGREGATORS.register("mgda", paper="Sener & Koltun 2018")
class MGDA(GramianAggregator):
    """MGDA: the min-norm convex combination of the task gradients (Sener & Koltun 2018).

    Its direction d satisfies ⟨d, g_i⟩ ≥ ‖d‖² for every task, so no task's loss increases to first
    order. `frank_wolfe=True` uses the paper's Frank-Wolfe solver (`max_iter`, `tol`) instead of
    the exact one. `upper_bound=True` is MGDA-UB: the engine applies the same solver to the
    gradients w.r.t. the shared representation (see `Aggregator.on_representation`).
    """

    def __init__(self, upper_bound: bool = False, frank_wolfe: bool = False,
                 max_iter: int = 250, tol: float = 1e-5) -> None:
        super().__init__()
        self.on_representation = check_flag("mgda: upper_bound", upper_bound)
        self.frank_wolfe = check_flag("mgda: frank_wolfe", frank_wolfe)
        self.max_iter = check_count("mgda: max_iter", max_iter)
        self.tol = check_positive("mgda: tol", tol, allow_zero=False)

    def weights(self, G: Tensor) -> Tensor:
        if self.frank_wolfe and len(G) > 2:
            return frank_wolfe_weights(G, self.max_iter, self.tol)
        return mgda_weights(G)
