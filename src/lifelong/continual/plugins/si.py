"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017): importance from the path integral of the loss.

During an experience, after every optimiser step, ω_i += −g_i Δθ_i (g the gradient before the
step, Δθ the step actually taken). At its end, Ω_i += ω_i / ((θ_i(end) − θ_i(start))² + ξ) and
θ* ← θ(end); later experiences add c Σ_i Ω_i (θ_i − θ*_i)².
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from lifelong.continual.importance import flat_grads, flat_params, param_shapes
from lifelong.continual.plugin import Batch, Context
from lifelong.continual.plugins.anchored import AnchoredPenalty, check_positive
from lifelong.core.registries import STRATEGIES


def path_integral_step(omega: torch.Tensor, grad: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """ω − g·Δθ: one step's contribution to SI's path integral (in place on `omega`)."""
    return omega.addcmul_(grad, delta, value=-1.0)


def si_importance(omega: torch.Tensor, total_change: torch.Tensor, xi: float) -> torch.Tensor:
    """Ω of one task (Zenke et al. 2017, eq. 5): ω / ((Δθ_total)² + ξ)."""
    return omega / (total_change.square() + xi)


@STRATEGIES.register("si", aliases=("synaptic_intelligence", "synapticintelligence"),
                     family="regularisation", stores="parameters", memory="O(params)",
                     compute="Low", forgetting="Moderate",
                     paper="Zenke, Poole & Ganguli 2017, Continual Learning Through Synaptic Intelligence")
class SI(AnchoredPenalty):
    """SI: loss + c Σ_i Ω_i (θ_i − θ*_i)², Ω accumulated online along the training trajectory.

    Defaults are the paper's Permuted-MNIST values c = 0.1 and ξ = 0.1 (its Split-MNIST run used
    c = 1, ξ = 1e-3). As in the authors' code, g is the gradient of the loss *without* SI's own
    surrogate: SI's penalty gradient 2cΩ(θ − θ*) is subtracted analytically from `.grad`, so no
    second backward pass is needed (other plugins' terms stay in g).
    """

    name = "si"
    flat_keys: ClassVar[tuple[str, ...]] = ("weight", "anchor", "omega", "start")

    def __init__(self, c: float = 0.1, xi: float = 0.1) -> None:
        super().__init__(check_positive("si: c", c))
        self.xi = check_positive("si: xi", xi, allow_zero=False)
        self.omega: torch.Tensor | None = None
        self.start: torch.Tensor | None = None
        self._grad: torch.Tensor | None = None
        self._before: torch.Tensor | None = None

    def before_experience(self, ctx: Context) -> None:
        theta = self.theta(ctx.model).detach()
        self.start, self.omega = theta, torch.zeros_like(theta)
        self.shapes = param_shapes(ctx.model)

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        self._before = self.theta(ctx.model).detach()
        self._grad = flat_grads(ctx.model)
        if self.weight is not None:
            self._grad.addcmul_(self.weight, self._before - self.anchor, value=-2.0 * self.strength)

    def after_step(self, ctx: Context, batch: Batch) -> None:
        delta = flat_params(ctx.model).detach() - self._before
        path_integral_step(self.omega, self._grad, delta)

    def after_experience(self, ctx: Context) -> None:
        theta = self.theta(ctx.model).detach()
        importance = si_importance(self.omega, theta - self.start, self.xi)
        self.weight = importance if self.weight is None else self.weight + importance
        self.anchor = theta
        self.omega = self.start = self._grad = self._before = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._grad = self._before = None
