"""CAGrad (Liu et al. 2021): the best worst-task improvement within a ball around the mean gradient."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from lifelong.core.checks import check_flag, check_positive
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator
from lifelong.grad.cone import gramian_scale
from lifelong.grad.mean import mean_weights


def cagrad_weights(G: Tensor, c: float = 0.5, rescale: bool = True) -> Tensor:
    """Weights of d = g₀ + c‖g₀‖ g_w/‖g_w‖ (÷ (1 + c²) if `rescale`), g₀ the mean gradient.

    w minimises g_wᵀg₀ + c‖g₀‖‖g_w‖ over the simplex (the dual of max_d min_i ⟨g_i, d⟩ subject to
    ‖d − g₀‖ ≤ c‖g₀‖, Liu et al. 2021, Eq. 5), solved by SLSQP in float64 on the scaled Gramian.
    """
    b = mean_weights(G)
    A = (G / gramian_scale(G)).numpy()
    radius = c * float(np.sqrt(max(b.numpy() @ A @ b.numpy(), 0.0)))
    if radius == 0:
        return b / (1 + c**2) if rescale else b
    Ab = A @ b.numpy()

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        norm = np.sqrt(max(w @ A @ w, 0.0) + 1e-18)
        return w @ Ab + radius * norm, Ab + radius * (A @ w) / norm

    res = minimize(objective, b.numpy(), jac=True, method="SLSQP", bounds=[(0, 1)] * len(b),
                   constraints={"type": "eq", "fun": lambda w: w.sum() - 1},
                   options={"ftol": 1e-14, "maxiter": 500})
    w = torch.from_numpy(np.clip(res.x, 0, None))
    norm_w = float(np.sqrt(max(res.x @ A @ res.x, 0.0)))
    # g_w ≈ 0: 0 is in the hull (Pareto-stationary), its direction is round-off; stay at g₀
    weights = b + (radius / norm_w) * w if norm_w > 1e-6 else b
    return weights / (1 + c**2) if rescale else weights


@AGGREGATORS.register("cagrad", paper="Liu et al. 2021")
class CAGrad(GramianAggregator):
    """CAGrad: conflict-averse gradient descent (Liu et al. 2021).

    c = 0.5 and the 1/(1 + c²) rescaling as in the authors' code; c = 0 gives the mean gradient.
    """

    def __init__(self, c: float = 0.5, rescale: bool = True) -> None:
        super().__init__()
        self.c = check_positive("cagrad: c", c)
        self.rescale = check_flag("cagrad: rescale", rescale)

    def weights(self, G: Tensor) -> Tensor:
        return cagrad_weights(G, self.c, self.rescale)
