"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017): importance from the path integral of the loss.

During an experience, after every optimiser step, ω_i += −g_i Δθ_i (g the gradient before the
step, Δθ the step actually taken). At its end, Ω_i += ω_i / ((θ_i(end) − θ_i(start))² + ξ) and
θ* ← θ(end); later experiences add c Σ_i Ω_i (θ_i − θ*_i)².
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lifelong.continual.importance import FlatBuffer, param_shapes
from lifelong.continual.plugin import Batch, Context
from lifelong.continual.plugins.anchored import AnchoredPenalty
from lifelong.core.checks import check_positive
from lifelong.core.registries import STRATEGIES


def path_integral_step(omega: torch.Tensor, grad: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """ω − g·Δθ: one step's contribution to SI's path integral (in place on `omega`)."""
    return omega.addcmul_(grad, delta, value=-1.0)


def si_importance(omega: torch.Tensor, total_change: torch.Tensor, xi: float) -> torch.Tensor:
    """Ω of one task (Zenke et al. 2017, eq. 5): ω / ((Δθ_total)² + ξ)."""
    return omega / (total_change.square() + xi)


class StepRecord:
    """θ and g before an optimiser step and θ after it, as flat vectors in buffers made once for
    a set of parameters (each step copies into them instead of concatenating every parameter)."""

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.before, self.grad, self.after = (FlatBuffer(params) for _ in range(3))

    def holds(self, params: Sequence[torch.Tensor]) -> bool:
        """Whether these are the very parameter tensors the record was made for."""
        return self.before.holds(params)

    @torch.no_grad()
    def record_before(self) -> None:
        """Copy the parameters and their gradients (zeros where none) into `before` and `grad`."""
        self.before.copy_params()
        pairs = [(v, p.grad) for v, p in zip(self.grad.views, self.grad.params, strict=True) if p.grad is not None]
        if len(pairs) < len(self.grad.views):
            self.grad.flat.zero_()
        if pairs:
            torch._foreach_copy_([v for v, _ in pairs], [g for _, g in pairs])

    @torch.no_grad()
    def step_taken(self) -> torch.Tensor:
        """Δθ = θ(now) − θ(before), in the `after` buffer."""
        return self.after.copy_params().sub_(self.before.flat)


@STRATEGIES.register("si", aliases=("synaptic_intelligence", "synapticintelligence"),
                     family="regularisation", stores="parameters", memory="O(params)",
                     compute="Low", forgetting="Moderate",
                     paper="Zenke, Poole & Ganguli 2017, Continual Learning Through Synaptic Intelligence")
class SI(AnchoredPenalty):
    """SI: loss + c Σ_i Ω_i (θ_i − θ*_i)², Ω accumulated online along the training trajectory.

    Defaults are the paper's Permuted-MNIST values c = 0.1 and ξ = 0.1 (its Split-MNIST run used
    c = 1, ξ = 1e-3). As in the authors' code, g is the gradient of the loss *without* SI's own
    surrogate: SI's penalty gradient 2cΩ(θ − θ*) is subtracted analytically from the recorded
    gradient, so no second backward pass is needed (other plugins' terms stay in g). g is read in
    `observe_grads`, before any plugin projects or masks it (A-GEM, PackNet), whatever their order.
    """

    name = "si"
    flat_keys: ClassVar[tuple[str, ...]] = ("weight", "anchor", "omega", "start")

    def __init__(self, c: float = 0.1, xi: float = 0.1) -> None:
        super().__init__(check_positive("si: c", c))
        self.xi = check_positive("si: xi", xi, allow_zero=False)
        self.omega: torch.Tensor | None = None
        self.start: torch.Tensor | None = None
        self._step: StepRecord | None = None

    def before_experience(self, ctx: Context) -> None:
        theta = self.theta(ctx.model).detach()
        self.start, self.omega = theta, torch.zeros_like(theta)
        self.shapes = param_shapes(ctx.model)
        self._step = None

    def recorder(self, model: nn.Module) -> StepRecord:
        """The step record of `model`'s parameters, remade when they were replaced."""
        params = list(model.parameters())
        if self._step is None or not self._step.holds(params):
            self._step = StepRecord(params)
        return self._step

    def observe_grads(self, ctx: Context, batch: Batch) -> None:
        step = self.recorder(ctx.model)
        step.record_before()
        if self.pulled:  # this step's Ω(θ − θ*) is in pull.half
            step.grad.flat.add_(self.pull.half.flat, alpha=-2.0 * self.strength)

    def after_step(self, ctx: Context, batch: Batch) -> None:
        path_integral_step(self.omega, self._step.grad.flat, self._step.step_taken())

    def after_experience(self, ctx: Context) -> None:
        theta = self.theta(ctx.model).detach()
        importance = si_importance(self.omega, theta - self.start, self.xi)
        self.weight = importance if self.weight is None else self.weight + importance
        self.anchor = theta
        self.omega = self.start = self._step = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._step = None
