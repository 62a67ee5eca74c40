"""`Classifier`: a backbone and a head, built by name from the registries for a given stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import BACKBONES, HEADS


class Classifier(nn.Module):
    """Backbone features → head logits; `takes_task` is True when the head needs task labels."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.takes_task = bool(getattr(head, "takes_task", False))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the head reads."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if self.takes_task and t is None:
            raise IncompatibleError("this model has one head per task and needs the task labels: call model(x, t) "
                                    "with t a tensor of task ids, one per row")
        h = self.backbone(x)
        return self.head(h, t) if self.takes_task else self.head(h)

    def adapt(self, classes: Sequence[int]) -> bool:
        """Let a growing head add units for `classes`; True when parameters changed."""
        return bool(getattr(self.head, "adapt", lambda _c: False)(classes))


def build_model(name: str, input_shape: Sequence[int], n_classes: int,
                task_classes: Sequence[Sequence[int]], head: str = "single",
                **kwargs: Any) -> Classifier:
    """Build backbone `name` (kwargs checked against its signature) with head `head`."""
    backbone = BACKBONES.build(name, tuple(input_shape), **kwargs)
    return Classifier(backbone, HEADS.build(head, backbone.out_features, n_classes, task_classes))
