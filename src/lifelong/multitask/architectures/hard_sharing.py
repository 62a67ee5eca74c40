"""Hard parameter sharing: one shared trunk, one head per task (Caruana, 1997)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lifelong.core.registries import ARCHITECTURES
from lifelong.multitask.architectures.base import ModuleFactory, MultiTaskModel, build


@ARCHITECTURES.register("hps", aliases=("HPS", "hard", "hard_sharing", "shared_bottom"),
                        paper="Caruana, 1997")
class HardSharing(MultiTaskModel):
    """A backbone shared by all tasks feeding task heads (Caruana, 1997).

    `representation` holds the backbone's last output (with its graph), for MGDA-UB.
    """

    def __init__(self, backbone: ModuleFactory, heads: Mapping[str, nn.Module]) -> None:
        super().__init__(heads)
        self.backbone = build(backbone, "backbone")

    def trunks(self) -> list[nn.Module]:
        return [self.backbone]

    def join(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return outputs[0]

    def task_output(self, task: str, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.heads[task](features)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.backbone(x)
        self.representation = z
        return {t: self.task_output(t, x, z) for t in self.heads}
