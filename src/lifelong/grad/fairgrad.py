"""FairGrad (Ban & Ji 2024): α-fair weights, positive w with (G w)_i = w_i^(−1/α); α = 1 is Nash-MTL."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_positive
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator

RIDGE = 1e-8  # on the unit-diagonal Gramian, i.e. relative to each task's own G_ii: keeps a solution when G is singular


def _utility(v: Tensor, c: Tensor, alpha: float) -> Tensor:
    """Σ c_i h(v_i) with h' = v^(−1/α)."""
    h = v.log() if alpha == 1 else v.pow(1 - 1 / alpha) / (1 - 1 / alpha)
    return c @ h


def _potential(H: Tensor, v: Tensor, c: Tensor, alpha: float) -> Tensor:
    """½ vᵀHv − Σ c_i h(v_i): convex, stationary exactly where H v = c ⊙ v^(−1/α)."""
    return 0.5 * v @ H @ v - _utility(v, c, alpha)


def _solve(H: Tensor, c: Tensor, alpha: float, max_iter: int, tol: float) -> Tensor:
    """Positive v with H v = c ⊙ v^(−1/α) (H positive definite, c > 0), by damped Newton steps."""
    v = (c / H.diagonal()).pow(alpha / (alpha + 1))  # exact for orthogonal gradients
    for _ in range(max_iter):
        target = c * v.pow(-1 / alpha)
        residual = H @ v - target
        if float((residual / target).abs().max()) < tol:
            break
        step = torch.linalg.solve(H + torch.diag(target / (alpha * v)), residual)
        f0, slope = float(_potential(H, v, c, alpha)), float(residual @ step)
        if slope < 1e-20 * (1 + abs(f0)):  # Newton decrement at round-off: converged
            break
        # the round-off of f (large v along near-null directions of H) must not block a step
        t, slack = 1.0, 1e-13 * float(0.5 * v @ H.abs() @ v + _utility(v, c, alpha).abs())
        while t > 1e-10 and ((v - t * step).min() <= 0 or
                             float(_potential(H, v - t * step, c, alpha)) > f0 - 1e-4 * t * slope + slack):
            t /= 2
        if t <= 1e-10:
            break
        v = v - t * step
    return v


def fair_weights(G: Tensor, alpha: float = 2.0, max_iter: int = 100, tol: float = 1e-10) -> Tensor:
    """Solve (G w)_i = w_i^(−1/α), w > 0, by damped Newton steps on its convex potential (float64).

    Solved on the unit-diagonal Ĝ = N⁻¹GN⁻¹, N = diag(‖g_i‖): w = N⁻¹v turns the equation into
    Ĝ v = c ⊙ v^(−1/α) with c_i = ‖g_i‖^(1/α − 1) (c = 1 for α = 1: Nash-MTL is invariant to each
    task's gradient scale). Ĝ gets a 1e-8 ridge, a perturbation of 1e-8 relative to every G_ii,
    so w is exact up to that. A task with a zero gradient has no solution (0 = w^(−1/α)): it gets
    weight 0 and the others are solved without it.
    """
    norms = G.diagonal().clamp_min(0).sqrt()
    live = norms > 0
    w = torch.zeros_like(norms)
    if live.any():
        n = norms[live]
        H = G[live][:, live] / torch.outer(n, n)
        H.diagonal().fill_(1 + RIDGE)
        w[live] = _solve(H, n.pow(1 / alpha - 1), alpha, max_iter, tol) / n
    return w


@AGGREGATORS.register("fairgrad", paper="Ban & Ji 2024")
class FairGrad(GramianAggregator):
    """FairGrad: the update maximising the α-fair utility Σ_i (g_iᵀd)^(1−α)/(1−α) (Ban & Ji 2024).

    α = 2 as in the authors' released experiments; α → ∞ tends to max-min fairness, α = 1 is
    Nash-MTL's proportional fairness. Every task with a nonzero gradient improves:
    ⟨d, g_i⟩ = w_i^(−1/α) > 0; a zero gradient gets weight 0.
    """

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__()
        self.alpha = check_positive("fairgrad: alpha", alpha, allow_zero=False)

    def weights(self, G: Tensor) -> Tensor:
        return fair_weights(G, self.alpha)
