"""GradNorm (Chen et al. 2018): learn loss weights that balance the tasks' gradient norms."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lifelong.core.checks import check_positive
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import WEIGHTINGS
from lifelong.grad.jacobian import jacobian
from lifelong.multitask.weighting.base import LossWeighting


@WEIGHTINGS.register("gradnorm", aliases=("GradNorm",), kind="loss", paper="Chen et al. 2018")
class GradNorm(LossWeighting):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich 2018), α = 1.5 as in the paper.

    With W the shared parameters passed as `shared` (the paper uses the last shared layer),
    G_t = ‖∇_W w_t L_t‖ = w_t ‖∇_W L_t‖ (one batched backward), Ḡ their mean, r_t = L̃_t / mean(L̃),
    L̃_t = L_t / L_t(0): the weights follow the gradient of L_grad = Σ_t |G_t − Ḡ r_t^α| (target
    held constant), while the network follows Σ_t w_t L_t (weights held constant). Both are in the
    returned total, so the engine's optimiser, which holds `task_weights`, updates them together;
    before each step the weights are renormalised to sum to k (Section 3.2). `needs_shared` tells
    the multi-task trainer that `combine` needs the graph of one batch through the shared parameters.
    """

    needs_shared = True

    def __init__(self, n_tasks: int, alpha: float = 1.5) -> None:
        super().__init__(n_tasks)
        self.alpha = check_positive("gradnorm: alpha", alpha)
        self.task_weights = nn.Parameter(torch.ones(n_tasks))
        self.register_buffer("initial_losses", torch.zeros(n_tasks))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def weigh(self, losses: Tensor, *, shared: Sequence[Tensor] | None,
              step: int) -> tuple[Tensor, Tensor]:
        if not shared:
            raise IncompatibleError("GradNorm needs `shared=`, the shared parameters (e.g. the last "
                                    "shared layer), to measure each task's gradient norm")
        with torch.no_grad():
            self.task_weights.clamp_(min=1e-6)
            self.task_weights.mul_(self.n_tasks / self.task_weights.sum())
            if not self.started:
                self.initial_losses.copy_(losses.detach())
                self.started.fill_(True)
        norms = jacobian(losses, shared, retain_graph=True).detach().norm(dim=1)
        w = self.task_weights
        grad_norms = w * norms.to(w)
        ratio = losses.detach().to(w) / self.initial_losses
        target = (grad_norms.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        balance = (grad_norms - target).abs().sum()
        return (w.detach().to(losses) * losses).sum() + balance.to(losses), w.detach()
