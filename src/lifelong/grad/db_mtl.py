"""DB-MTL (Lin et al. 2023): log-loss gradients, averaged over steps, rescaled to the largest norm."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator


def db_mtl_step(J: Tensor, losses: Tensor, ema: Tensor, beta: float,
                eps: float = 1e-8) -> tuple[Tensor, Tensor, Tensor]:
    """One DB-MTL step: (update, scales α, updated EMA ĝ).

    g_t = ∇ log(L_t + ε) = J_t / (L_t + ε) (loss-scale balancing), ĝ_t ← β ĝ_t + (1 − β) g_t,
    α_t = max_j ‖ĝ_j‖ / (‖ĝ_t‖ + ε) and update = Σ_t α_t ĝ_t: every task contributes a step as long
    as the largest one (gradient-magnitude balancing).
    """
    g = J / (losses.to(J) + eps)[:, None]
    ema = beta * ema + (1 - beta) * g
    norms = ema.norm(dim=1)
    alpha = norms.max() / (norms + eps)
    return alpha @ ema, alpha, ema


@AGGREGATORS.register("db_mtl", aliases=("DB-MTL",), paper="Lin et al. 2023")
class DBMTL(Aggregator):
    """DB-MTL: dual-balancing multi-task learning (Lin et al. 2023, "Dual-Balancing for Multi-Task
    Learning", Algorithm 1), over the whole model.

    At step s = 1, 2, … the EMA rate is β_s = β / s^σ (the paper's β / (k + 1)^σ); β = 0.9, ε = 1e-8
    (inside the log and beside the norms) and ĝ = 0 before the first step as in LibMTL, the first
    author's library. σ = 0.5 is ours (the average forgets its start like 0.9/√s; on the embedded
    benchmarks the constant rate trains much more slowly); LibMTL defaults to σ = 0, so pass
    `beta_sigma=0` to match it.
    The gradients of log L_t come from J and the losses (∇ log L_t = g_t / L_t), so no extra
    backward. `last_weights` holds the scales α (they multiply the averaged log-loss gradients).
    The EMA ĝ (k × p) and the step count live in `state_dict`.
    """

    needs_losses = True
    lazy = ("ema",)

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.5, eps: float = 1e-8) -> None:
        super().__init__()
        beta, beta_sigma, eps = check_numbers("DB-MTL", beta=beta, beta_sigma=beta_sigma, eps=eps)
        if not 0 <= beta < 1 or beta_sigma < 0 or eps <= 0:
            raise ConfigError(f"DB-MTL: need 0 <= beta < 1, beta_sigma >= 0 and eps > 0 (a zero loss has no "
                              f"log), got beta={beta}, "
                              f"beta_sigma={beta_sigma}, eps={eps}")
        self.beta, self.beta_sigma, self.eps = beta, beta_sigma, eps
        self.register_buffer("ema", torch.zeros(0, 0))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        ema = self.lazy_state("ema", tuple(J.shape))
        self.step += 1
        rate = self.beta / int(self.step) ** self.beta_sigma
        update, alpha, self.ema = db_mtl_step(J, losses, ema.to(J), rate, self.eps)
        self.last_weights = alpha.detach()
        return update

    def task_scales(self, losses: Tensor) -> Tensor:
        """The heads learn from log L_t too: ∇ log(L_t + ε) = g_t / (L_t + ε)."""
        return 1 / (losses + self.eps)
