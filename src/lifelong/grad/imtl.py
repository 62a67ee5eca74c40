"""IMTL (Liu et al. 2021): IMTL-G's equal-projection weights on the gradients of IMTL-L's scaled losses."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.core.errors import ShapeMismatchError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator, gramian
from lifelong.grad.imtl_g import imtl_g_weights


def imtl_weights(G: Tensor, log_scale: Tensor) -> Tensor:
    """Weights on the raw task gradients: IMTL-G's α for the scaled gradients e^{s_t} g_t, times e^{s}.

    The scaled Gramian is e^{s} e^{s}ᵀ ⊙ G, so J itself is never rescaled.
    """
    scale = log_scale.to(G).exp()
    return imtl_g_weights(G * torch.outer(scale, scale)) * scale


def scale_gradient(log_scale: Tensor, losses: Tensor) -> Tensor:
    """∂/∂s_t of the scaled loss e^{s_t} L_t − s_t: e^{s_t} L_t − 1, zero when e^{s_t} L_t = 1."""
    return log_scale.exp() * losses.to(log_scale) - 1


@AGGREGATORS.register("imtl", paper="Liu et al. 2021")
class IMTL(Aggregator):
    """IMTL: impartial multi-task learning, the hybrid of IMTL-L and IMTL-G (Liu et al. 2021, ICLR,
    Algorithm 1).

    Learned log-scales s (init 0) turn each loss into e^{s_t} L_t − s_t, whose gradient on the shared
    parameters is e^{s_t} g_t; IMTL-G weighs these so the update has equal projections on every
    task's unit gradient. The update is Σ_t α_t e^{s_t} g_t and `last_weights` = α ⊙ e^{s}, the
    weights on the raw gradients. As in `imtl_g`, J is taken w.r.t. the shared parameters (the paper
    uses the shared representation, for speed).

    Contract: the scales are the parameter `log_scale`; each call *adds* e^{s_t} L_t − 1 (the
    scales' gradient, see `scale_gradient`) to `log_scale.grad`, so the optimiser that holds this
    module's parameters (the multi-task engine adds `weighting.parameters()` to the model's) moves
    s towards e^{s_t} L_t = 1 at its next step. `log_scale` is empty until the first call gives it
    k entries, in place: optimisers keep the same parameter object and size their state at their
    first step, which comes after the first call. The scales live in `state_dict`.
    """

    needs_losses = True
    lazy = ("log_scale",)

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(0))

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        s = self.log_scale
        if not s.numel():
            s.data = torch.zeros(len(J), dtype=s.dtype, device=s.device)
        if len(s) != len(J):
            raise ShapeMismatchError(f"IMTL: it has loss scales for {len(s)} tasks but the Jacobian has "
                                     f"{len(J)}; build a new aggregator for another task set")
        grad = scale_gradient(s.detach(), losses.to(s.device))
        s.grad = grad if s.grad is None else s.grad + grad
        w = imtl_weights(gramian(J), s.detach())
        return self.weigh(w, J)

    def task_scales(self, losses: Tensor) -> Tensor | None:
        """The heads learn from the scaled losses: e^{s_t} g_t (Liu et al. 2021, Algorithm 1)."""
        return self.log_scale.detach().exp() if self.log_scale.numel() else None
