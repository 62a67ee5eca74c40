"""The plugin half EWC, online EWC, SI and MAS share: a weighted quadratic pull towards an anchor."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from lifelong.continual.importance import flat_params, grow_flat, param_shapes, quadratic_penalty
from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.core.errors import ConfigError


def check_positive(what: str, value: float, *, allow_zero: bool = True) -> float:
    """`value` as a float, or a ConfigError naming `what` when it is negative, zero or not finite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{what} must be a finite number {bound}, got {value}")
    return value


def check_count(what: str, value: int | None, *, allow_none: bool = False) -> int | None:
    """`value` when it is a positive integer (or None where allowed), else a ConfigError naming `what`."""
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        hint = " or None (all)" if allow_none else ""
        raise ConfigError(f"{what} must be a positive integer{hint}, got {value!r}")
    return value


class AnchoredPenalty(Plugin):
    """Adds `strength · (Σ_i Ω_i (θ_i − θ*_i)² + offset)` once an importance Ω exists.

    Subclasses set `weight` (Ω, flat), `anchor` (θ*, flat) and `offset` at experience ends. Every
    flat tensor named in `flat_keys` follows a growing classifier: new units get zero importance.
    """

    flat_keys: ClassVar[tuple[str, ...]] = ("weight", "anchor")

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.weight: torch.Tensor | None = None
        self.anchor: torch.Tensor | None = None
        self.offset = 0.0
        self.shapes: list[list[int]] = []

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
        theta = self.theta(ctx.model)
        return {"penalty": self.strength * (quadratic_penalty(theta, self.anchor, self.weight) + self.offset)}

    def state_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.flat_keys}, "offset": self.offset,
                "shapes": [list(s) for s in self.shapes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self.flat_keys:
            setattr(self, key, state[key])
        self.offset = float(state["offset"])
        self.shapes = [list(s) for s in state["shapes"]]
