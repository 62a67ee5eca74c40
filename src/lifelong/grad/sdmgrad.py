"""SDMGrad (Xiao et al. 2023): min-norm weights pulled toward the mean gradient, double-sampled."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_count, check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator
from lifelong.grad.simplex import project_simplex


def sdmgrad_weights(G12: Tensor, w: Tensor, lamda: float = 0.3, n_iter: int = 20, lr: float = 1.0,
                    momentum: float = 0.0) -> Tensor:
    """`n_iter` projected gradient steps on min_{w ∈ Δ} ½‖Jᵀw + λ g₀‖², g₀ = Jᵀ1/k (Xiao et al. 2023,
    Algorithm 1), from `w`.

    The gradient J (Jᵀw + λ g₀) = J Jᵀ (w + λ/k) is estimated by G₁₂ (w + λ/k) with G₁₂ = J₁ J₂ᵀ from
    two independent Jacobians. The step is lr / ‖G₁₂‖₂, projected gradient's safe step (scale-free;
    w is left as is when G₁₂ = 0); `momentum` > 0 adds heavy-ball velocity, reset at each call.
    """
    norm = float(torch.linalg.matrix_norm(G12, ord=2))
    if norm == 0:
        return w
    shift, velocity = lamda / len(w), torch.zeros_like(w)
    for _ in range(n_iter):
        velocity = momentum * velocity + G12 @ (w + shift)
        w = project_simplex(w - lr / norm * velocity)
    return w


@AGGREGATORS.register("sdmgrad", paper="Xiao et al. 2023")
class SDMGrad(Aggregator):
    """SDMGrad: stochastic direction-oriented multi-objective gradient descent ("Direction-oriented
    Multi-objective Learning: Simple and Provable Stochastic Algorithms", Xiao et al. 2023, NeurIPS).

    Takes the Jacobians of three disjoint parts of the batch (3 × k × p): the first two estimate the
    weights' subproblem (`sdmgrad_weights`), the third gives the update (J₃ᵀw + λ J₃ᵀ1/k) / (1 + λ).
    λ = 0.3 and n_iter = 20 as in LibMTL; λ = 0 is a double-sampled MGDA, λ → ∞ the mean. w starts
    uniform and is warm-started from the previous call (in `state_dict`); `last_weights` holds the
    effective task weights (w + λ/k) / (1 + λ). The inner loop is the paper's plain projected
    gradient (momentum = 0) with step 1/‖G₁₂‖₂, reusing the same two estimates at every step.
    LibMTL and the authors' code instead run SGD with lr 5 (or 10) and momentum 0.5 on
    G₁₂ / (mean_i √G₁₂,ii)², an implementation detail that on strongly conflicting tasks overshoots
    to the simplex's corners instead of converging.
    """

    samples = 3
    lazy = ("w",)

    def __init__(self, lamda: float = 0.3, n_iter: int = 20, lr: float = 1.0, momentum: float = 0.0) -> None:
        super().__init__()
        n_iter = check_count("SDMGrad: n_iter", n_iter)
        lamda, lr, momentum = check_numbers("SDMGrad", lamda=lamda, lr=lr, momentum=momentum)
        if lamda < 0 or lr <= 0 or not 0 <= momentum < 1:
            raise ConfigError(f"SDMGrad: need lamda >= 0, lr > 0 and 0 <= momentum < 1, got "
                              f"lamda={lamda}, n_iter={n_iter}, lr={lr}, momentum={momentum}")
        self.lamda, self.n_iter, self.lr, self.momentum = lamda, n_iter, lr, momentum
        self.register_buffer("w", torch.zeros(0, dtype=torch.float64))

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        k = J.shape[1]
        G12 = (J[0] @ J[1].T).to("cpu", torch.float64)
        w = sdmgrad_weights(G12, self.lazy_state("w", (k,), 1 / k).cpu(), self.lamda, self.n_iter, self.lr,
                            self.momentum)
        self.w = w.to(self.w.device)
        self.last_weights = (w + self.lamda / k) / (1 + self.lamda)
        return self.last_weights.to(J) @ J[2]
