"""ExcessMTL (He et al. 2024): raise the weights of the tasks farthest from convergence (largest excess risk)."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator


def excess_risks(J: Tensor, sq_sum: Tensor, eps: float = 1e-7) -> tuple[Tensor, Tensor]:
    """Per-task excess risk estimates e_i = g_iᵀ diag(S_i + ε)^(−½) g_i and the updated S = S + J ⊙ J.

    The second-order Taylor estimate ½ (θ − θ*)ᵀH(θ − θ*) with the Newton step θ − θ* = H⁻¹g and
    AdaGrad's diagonal H = diag(√S) (He et al. 2024, Eqs. 6–7); the ½ cancels in the normalisation.
    """
    sq_sum = sq_sum + J * J
    return (J * J / (sq_sum + eps).sqrt()).sum(1), sq_sum


def excess_mtl_weights(weights: Tensor, risks: Tensor, initial: Tensor,
                       step_size: float = 0.01) -> tuple[Tensor, Tensor]:
    """One exponentiated-gradient step w_i ∝ w_i exp(η e_i / e⁰_i), Σ w = k; returns (w, e⁰).

    e⁰_i, the normaliser, is task i's first non-zero estimate: until it is known (e⁰_i = 0) task i
    gets no push, so the first step leaves the weights unchanged.
    """
    ratio = torch.where(initial > 0, risks / initial.clamp_min(torch.finfo(initial.dtype).tiny), 0.0)
    w = len(weights) * torch.softmax(weights.log() + step_size * ratio, dim=0)
    return w, torch.where(initial > 0, initial, risks)


@AGGREGATORS.register("excess_mtl", aliases=("ExcessMTL", "Excess-MTL"), paper="He et al. 2024")
class ExcessMTL(Aggregator):
    """ExcessMTL: task weights by exponentiated gradient on estimated excess risks ("Robust Multi-Task
    Learning with Excess Risks", He et al. 2024), so noisy tasks, whose loss stays high but whose
    excess risk shrinks, are not over-weighted; the update is Σ_i w_i g_i.

    η = `robust_step_size` = 0.01 and ε = 1e-7 as in the authors' code. As there and in LibMTL,
    each task's excess risk is divided by its first (non-zero) estimate, where the paper averages
    the first epochs (Appendix C.1), and the weights start at 1 and sum to k (the paper's simplex
    weights times k: the update keeps the scale of the sum of the task gradients). The
    squared-gradient sums S (k × p), the normalisers and the weights live in `state_dict`.
    """

    lazy = ("sq_sum", "initial", "task_weights")

    def __init__(self, robust_step_size: float = 0.01, eps: float = 1e-7) -> None:
        super().__init__()
        robust_step_size, eps = check_numbers("ExcessMTL", robust_step_size=robust_step_size, eps=eps)
        if robust_step_size < 0 or eps <= 0:
            raise ConfigError(f"ExcessMTL: robust_step_size must be >= 0 and eps > 0, got {robust_step_size} "
                              f"and {eps}")
        self.robust_step_size, self.eps = robust_step_size, eps
        self.register_buffer("sq_sum", torch.zeros(0, 0))
        self.register_buffer("initial", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("task_weights", torch.zeros(0, dtype=torch.float64))

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        sq_sum = self.lazy_state("sq_sum", tuple(J.shape))
        initial, weights = self.lazy_state("initial", (len(J),)), self.lazy_state("task_weights", (len(J),), 1.0)
        risks, self.sq_sum = excess_risks(J, sq_sum.to(J), self.eps)
        w, initial = excess_mtl_weights(weights.cpu(), risks.to("cpu", torch.float64), initial.cpu(),
                                        self.robust_step_size)
        self.initial, self.task_weights = initial.to(self.initial.device), w.to(self.task_weights.device)
        return self.weigh(w, J)

    def task_scales(self, losses: Tensor) -> Tensor | None:
        """The heads learn from the weighted sum Σ w_i L_i too, as in the authors' code."""
        return self.task_weights.detach().clone() if self.task_weights.numel() else None
