"""FairGrad (Ban & Ji 2024): α-fair weights, positive w with (G w)_i = w_i^(−1/α); α = 1 is Nash-MTL."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_positive
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator
from lifelong.grad.cone import gramian_scale

RIDGE = 1e-8  # relative to the largest diagonal entry: keeps a solution when G is singular


def _potential(H: Tensor, w: Tensor, alpha: float) -> Tensor:
    """½ wᵀHw − Σ h(w_i) with h' = w^(−1/α): convex, stationary exactly where H w = w^(−1/α)."""
    h = w.log() if alpha == 1 else w.pow(1 - 1 / alpha) / (1 - 1 / alpha)
    return 0.5 * w @ H @ w - h.sum()


def fair_weights(G: Tensor, alpha: float = 2.0, max_iter: int = 100, tol: float = 1e-10) -> Tensor:
    """Solve (G w)_i = w_i^(−1/α), w > 0, by damped Newton steps on its convex potential (float64).

    G is scaled to unit largest diagonal and given a 1e-8 ridge; the solution is scaled back
    (w ↦ w · s^(−α/(α+1)) for G = s·Ĝ), so it is exact up to that ridge.
    """
    s = gramian_scale(G)
    H = G / s + RIDGE * torch.eye(len(G), dtype=G.dtype)
    w = H.diagonal().pow(-alpha / (alpha + 1))  # exact for orthogonal gradients
    for _ in range(max_iter):
        target = w.pow(-1 / alpha)
        residual = H @ w - target
        if float((residual / target).abs().max()) < tol:
            break
        step = torch.linalg.solve(H + torch.diag(target / (alpha * w)), residual)
        f0, slope = float(_potential(H, w, alpha)), float(residual @ step)
        if slope < 1e-20 * (1 + abs(f0)):  # Newton decrement at round-off: converged
            break
        # the round-off of f (large w along near-null directions of G) must not block a step
        t, slack = 1.0, 1e-13 * float(0.5 * w @ H.abs() @ w + _potential(0 * H, w, alpha).abs())
        while t > 1e-10 and ((w - t * step).min() <= 0 or
                             float(_potential(H, w - t * step, alpha)) > f0 - 1e-4 * t * slope + slack):
            t /= 2
        if t <= 1e-10:
            break
        w = w - t * step
    return w * s ** (-alpha / (alpha + 1))


@AGGREGATORS.register("fairgrad", paper="Ban & Ji 2024")
class FairGrad(GramianAggregator):
    """FairGrad: the update maximising the α-fair utility Σ_i (g_iᵀd)^(1−α)/(1−α) (Ban & Ji 2024).

    α = 2 as in the authors' released experiments; α → ∞ tends to max-min fairness, α = 1 is
    Nash-MTL's proportional fairness. Every task improves: ⟨d, g_i⟩ = w_i^(−1/α) > 0.
    """

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__()
        self.alpha = check_positive("fairgrad: alpha", alpha, allow_zero=False)

    def weights(self, G: Tensor) -> Tensor:
        return fair_weights(G, self.alpha)
