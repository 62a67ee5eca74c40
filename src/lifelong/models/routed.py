"""Task-routed networks installed in a `Classifier`: a network of (x, slots) where a backbone of x sits.

The engine calls `model(x)` (or `model(x, t)` with a multi-head); the backbone never sees task
labels. An architecture strategy therefore builds a task-conditioned network `net(x, slots)`,
wraps it in `Routed` and installs it as the model's backbone; before every forward (the
training batch in `extend_batch`, the evaluation inputs in `predict`) it sets the slots with
`route`. A forward whose batch size differs from the routed slots fails loudly instead of
using stale labels; strategies that run the model on data of their own (a Fisher, distillation
targets) therefore do not combine with architecture strategies (the engine refuses them before
training: `Plugin.runs_model`).
"""

from __future__ import annotations

import torch
from torch import nn

from lifelong.core.errors import IncompatibleError


class Routed(nn.Module):
    """Runs `net(x, slots)` with the slots the installing strategy set by `route` for this batch."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.slots: torch.Tensor | None = None

    def route(self, slots: torch.Tensor) -> None:
        """The task slot of each sample of the next forward."""
        self.slots = slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slots is None or self.slots.shape[0] != x.shape[0]:
            raise IncompatibleError(
                f"an architecture strategy routed {None if self.slots is None else self.slots.shape[0]} "
                f"task labels but the model got {x.shape[0]} inputs: another strategy ran the model on "
                "data of its own (a Fisher, distillation targets); a plugin that does so must declare "
                "`runs_model = True`, so that the engine refuses the combination before training")
        return self.net(x, self.slots)


class PassThrough(nn.Module):
    """A head that returns its input, for networks that end in their own per-task outputs."""

    def forward(self, h: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        del t
        return h


def classifier_backbone(model: nn.Module) -> nn.Module:
    """The backbone of a lifelong Classifier; IncompatibleError for any other model."""
    if not (hasattr(model, "head") and hasattr(getattr(model, "backbone", None), "out_features")):
        raise IncompatibleError(
            f"architecture strategies rebuild a lifelong Classifier (a backbone with out_features, "
            f"and a head), got {type(model).__name__}; build the model with lifelong.models.build_model")
    return model.backbone


def install(model: nn.Module, net: nn.Module, own_head: bool = False) -> Routed:
    """Make `net` the backbone of `model` (and its head too when `own_head`); returns the router."""
    classifier_backbone(model)
    routed = Routed(net)
    model.backbone = routed
    if own_head:
        model.head = PassThrough()
    return routed
