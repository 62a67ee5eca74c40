"""The plugin half EWC, online EWC, SI and MAS share: a weighted quadratic pull towards an anchor."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from lifelong.continual.importance import QuadraticPull, flat_params, grow_flat, param_shapes
from lifelong.continual.plugin import Batch, Context, Plugin


class AnchoredPenalty(Plugin):
    """Adds `strength · (Σ_i Ω_i (θ_i − θ*_i)² + offset)` once an importance Ω exists.

    Subclasses set `weight` (Ω, flat), `anchor` (θ*, flat) and `offset` at experience ends. Every
    flat tensor named in `flat_keys` follows a growing classifier: new units get zero importance.
    The penalty's value is a constant loss term (logged, checked for NaN); its gradient
    2·strength·Ω(θ − θ*) is added to `.grad` in `add_grads`, without autograd (`QuadraticPull`).
    """

    flat_keys: ClassVar[tuple[str, ...]] = ("weight", "anchor")
    anchors_parameters = True

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.weight: torch.Tensor | None = None
        self.anchor: torch.Tensor | None = None
        self.offset = 0.0
        self.shapes: list[list[int]] = []
        self.pull: QuadraticPull | None = None
        self.pulled = False  # whether this step's add_grads added the penalty's gradient

    def theta(self, model: nn.Module) -> torch.Tensor:
        """The flat parameters (differentiable), after re-laying the state if the model grew."""
        theta = flat_params(model)
        if self.anchor is not None and (theta.shape[-1] != self.anchor.shape[-1]
                                        or theta.device != self.anchor.device):
            self.follow(model)
        return theta

    def follow(self, model: nn.Module) -> None:
        """Move the flat state to the model's device and grow it to the model's parameter shapes."""
        device, shapes = next(model.parameters()).device, param_shapes(model)
        for key in self.flat_keys:
            value = getattr(self, key)
            if value is not None:
                value = value.to(device)
                setattr(self, key, value if shapes == self.shapes else grow_flat(value, self.shapes, shapes))
        self.shapes = shapes

    def loss_terms(self, ctx: Context, batch: Batch, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.weight is None:
            return {}
        params = list(ctx.model.parameters())
        if self.pull is None or not self.pull.holds(params):
            self.pull = QuadraticPull(params)
        theta = self.pull.theta.flat
        if theta.shape[-1] != self.anchor.shape[-1] or theta.device != self.anchor.device:
            self.follow(ctx.model)
        return {"penalty": self.strength * (self.pull.value(self.anchor, self.weight) + self.offset)}

    def add_grads(self, ctx: Context, batch: Batch) -> None:
        self.pulled = self.pull is not None and self.pull.add_grad(self.strength)

    def state_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.flat_keys}, "offset": self.offset,
                "shapes": [list(s) for s in self.shapes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self.flat_keys:
            setattr(self, key, state[key])
        self.offset = float(state["offset"])
        self.shapes = [list(s) for s in state["shapes"]]
