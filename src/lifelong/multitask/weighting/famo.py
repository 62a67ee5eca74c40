"""FAMO (Liu et al. 2023): task weights learned from how much each log-loss fell in the last step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.core.checks import check_positive, check_vector
from lifelong.core.errors import DataError, IncompatibleError, NonFiniteLossError, ShapeMismatchError
from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting

EPS = 1e-8  # keeps log(L − b) finite at the lower bound, as in the authors' code
BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # Adam's defaults (Kingma & Ba 2015)


def famo_logit_update(logits: Tensor, delta: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                      step: int, lr: float, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    """One FAMO update of the task logits ξ: (ξ, Adam's first and second moments) after it.

    The gradient is ∇_ξ softmax(ξ)ᵀδ + γξ = z ⊙ (δ − zᵀδ) + γξ (Liu et al. 2023, Algorithm 1),
    followed by Adam's bias-corrected step number `step` ≥ 1 (Kingma & Ba 2015, Algorithm 1).
    """
    z = torch.softmax(logits, dim=0)
    grad = z * (delta - z @ delta) + gamma * logits
    exp_avg = BETAS[0] * exp_avg + (1 - BETAS[0]) * grad
    exp_avg_sq = BETAS[1] * exp_avg_sq + (1 - BETAS[1]) * grad**2
    m_hat, v_hat = exp_avg / (1 - BETAS[0] ** step), exp_avg_sq / (1 - BETAS[1] ** step)
    return logits - lr * m_hat / (v_hat.sqrt() + ADAM_EPS), exp_avg, exp_avg_sq


@WEIGHTINGS.register("famo", aliases=("FAMO",), kind="loss", paper="Liu et al. 2023")
class FAMO(LossWeighting):
    """Fast Adaptive Multitask Optimization (Liu, Feng, Stone & Liu 2023, Algorithm 1).

    With z = softmax(ξ) and D_t = L_t − b_t + ε (b the `lower_bounds`, 0 by default; ε = 1e-8):
    L = Σ_t z_t log D_t / c, c = Σ_t z_t / D_t held constant, so the model follows the weights
    z_t / (c D_t), which sum to 1. After the optimiser step the engine calls
    `after_step(losses_after)` with the losses recomputed on the same batch; with
    δ_t = log D_t(before) − log D_t(after), ξ takes an Adam step (the authors' choice over the
    paper's plain step) on ∇_ξ zᵀδ + γξ, so a task whose loss fell less gains weight.
    `w_lr` = 0.025 and `gamma` = 1e-3 as in LibMTL (the authors tune γ per data set). ξ is a
    buffer, not a parameter, so the engine's optimiser never sees it; ξ, Adam's moments and step
    count and the last losses are in `state_dict`.
    """

    needs_losses_after_step = True

    def __init__(self, n_tasks: int, w_lr: float = 0.025, gamma: float = 1e-3,
                 lower_bounds: Sequence[float] | None = None) -> None:
        super().__init__(n_tasks)
        w_lr = check_positive("famo: w_lr (the authors use 0.025)", w_lr, allow_zero=False)
        gamma = check_positive("famo: gamma (LibMTL uses 1e-3)", gamma)
        bounds = torch.zeros(n_tasks, dtype=torch.float64) if lower_bounds is None else \
            check_vector("famo: lower_bounds", lower_bounds, n_tasks)
        self.w_lr, self.gamma = w_lr, gamma
        self.register_buffer("lower_bounds", bounds, persistent=False)
        for name in ("logits", "exp_avg", "exp_avg_sq", "last_losses"):
            self.register_buffer(name, torch.zeros(n_tasks, dtype=torch.float64))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("pending", torch.zeros((), dtype=torch.bool))

    def _gap(self, losses: Tensor, where: str) -> Tensor:
        """D = L − b + ε (k,), checked positive so its log is finite."""
        gap = losses - self.lower_bounds.to(losses) + EPS
        if (gap.detach() <= 0).any():
            raise DataError(f"{where}: the losses {losses.detach().tolist()} must stay above their "
                            f"lower bounds {self.lower_bounds.tolist()}; lower the bounds")
        return gap

    def weigh(self, losses: Tensor, *, shared: Sequence[Tensor] | None,
              step: int) -> tuple[Tensor, Tensor]:
        gap = self._gap(losses, "FAMO.combine")
        z = torch.softmax(self.logits, dim=0).to(losses)
        c = (z / gap.detach()).sum()
        self.last_losses.copy_(losses.detach())
        self.pending.fill_(True)
        return (z * gap.log()).sum() / c, z / (c * gap.detach())

    def after_step(self, losses_after: Tensor) -> None:
        """Update ξ from the task losses (k,) recomputed on the same batch after the model's step."""
        if not self.pending:
            raise IncompatibleError("FAMO.after_step: no step to follow; call combine(losses) first, "
                                    "then the optimiser's step, then after_step once with the losses "
                                    "recomputed on the same batch")
        if not isinstance(losses_after, Tensor) or losses_after.shape != (self.n_tasks,):
            got = tuple(losses_after.shape) if isinstance(losses_after, Tensor) else type(losses_after).__name__
            raise ShapeMismatchError(f"FAMO.after_step: expected a vector of {self.n_tasks} task "
                                     f"losses, got shape {got}; stack them with torch.stack")
        after = losses_after.detach().to(self.last_losses)
        if not torch.isfinite(after).all():
            raise NonFiniteLossError(f"FAMO.after_step: the losses after the step {after.tolist()} "
                                     "are not all finite; lower the learning rate")
        before = self.last_losses - self.lower_bounds + EPS  # checked positive by combine
        delta = before.log() - self._gap(after, "FAMO.after_step").log()
        self.adam_steps += 1
        logits, exp_avg, exp_avg_sq = famo_logit_update(
            self.logits, delta, self.exp_avg, self.exp_avg_sq, int(self.adam_steps), self.w_lr, self.gamma)
        self.logits.copy_(logits)
        self.exp_avg.copy_(exp_avg)
        self.exp_avg_sq.copy_(exp_avg_sq)
        self.pending.fill_(False)
