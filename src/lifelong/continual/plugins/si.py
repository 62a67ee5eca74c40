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

from lifelong.continual.importance import param_shapes, param_views
from lifelong.continual.plugin import Batch, Context
from lifelong.continual.plugins.anchored import AnchoredPenalty
from lifelong.core.checks import check_positive
from lifelong.core.registries import STRATEGIES


def si_importance(omega: torch.Tensor, total_change: torch.Tensor, xi: float) -> torch.Tensor:
    """Ω of one task (Zenke et al. 2017, eq. 5): ω / ((Δθ_total)² + ξ)."""
    return omega / (total_change.square() + xi)


class PathIntegral:
    """SI's ω (Zenke et al. 2017, eq. 3) over a model's parameters, laid out flat in `omega`.

    Each step's ω −= g Δθ is added as + g θ(before) in `record` and − g θ(after) in `step_taken`:
    two fused multiply-adds that read θ in place, so no copy of the parameters is made. The two
    terms cancel to the step's contribution up to float rounding of about ε |θ| / |Δθ| of it.
    """

    def __init__(self, omega: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        self.omega, self.params = omega, list(params)
        self.views = param_views(omega, self.params)
        self.grads: list[torch.Tensor] = []  # this step's g, for the parameters that have a gradient
        self.omegas: list[torch.Tensor] = []
        self.thetas: list[torch.Tensor] = []

    def holds(self, omega: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
        """Whether this accumulates into `omega` for exactly these parameters."""
        return omega is self.omega and len(params) == len(self.params) and all(
            a is b and a.shape == v.shape for a, b, v in zip(params, self.params, self.views, strict=True))

    @torch.no_grad()
    def record(self, pull: Sequence[torch.Tensor] | None = None, alpha: float = 0.0) -> None:
        """Keep g = .grad (+ alpha · pull), zero where a parameter has no gradient, and add g θ to ω."""
        has = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not has:  # no parameter has a gradient this step: nothing moves, nothing to add
            self.grads, self.omegas, self.thetas = [], [], []
            return
        grads = [self.params[i].grad for i in has]
        # a copy either way: later plugins may project or mask .grad in place before the step
        self.grads = (torch._foreach_add(grads, [pull[i] for i in has], alpha=alpha) if pull is not None
                      else torch._foreach_mul(grads, 1.0))
        self.omegas, self.thetas = [self.views[i] for i in has], [self.params[i] for i in has]
        torch._foreach_addcmul_(self.omegas, self.grads, self.thetas)

    @torch.no_grad()
    def step_taken(self) -> None:
        """Subtract g θ(after the step) from ω, completing ω −= g Δθ for the recorded step."""
        if self.grads:
            torch._foreach_addcmul_(self.omegas, self.grads, self.thetas, value=-1.0)
        self.grads, self.omegas, self.thetas = [], [], []


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
        self._path: PathIntegral | None = None

    def before_experience(self, ctx: Context) -> None:
        theta = self.theta(ctx.model).detach()
        self.start, self.omega = theta, torch.zeros_like(theta)
        self.shapes = param_shapes(ctx.model)
        self._path = None

    def path(self, model: nn.Module) -> PathIntegral:
        """The path integral into `omega` over `model`'s parameters, remade when either was replaced."""
        params = list(model.parameters())
        if self._path is None or not self._path.holds(self.omega, params):
            self._path = PathIntegral(self.omega, params)
        return self._path

    def observe_grads(self, ctx: Context, batch: Batch) -> None:
        path = self.path(ctx.model)
        if self.pulled:  # this step's Ω(θ − θ*) is in pull.half
            path.record(self.pull.half.views, -2.0 * self.strength)
        else:
            path.record()

    def after_step(self, ctx: Context, batch: Batch) -> None:
        self._path.step_taken()

    def after_experience(self, ctx: Context) -> None:
        theta = self.theta(ctx.model).detach()
        importance = si_importance(self.omega, theta - self.start, self.xi)
        self.weight = importance if self.weight is None else self.weight + importance
        self.anchor = theta
        self.omega = self.start = self._path = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._path = None
