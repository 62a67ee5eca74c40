"""Soft parameter sharing: one model per task, coupled by a penalty on their parameters."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lifelong.core.checks import check_positive
from lifelong.core.errors import ConfigError
from lifelong.core.registries import ARCHITECTURES
from lifelong.multitask.architectures.base import ModuleFactory, MultiTaskModel, build


def l2_coupling(stacked: torch.Tensor) -> torch.Tensor:
    """Σ_{t<t'} ‖θ_t − θ_t'‖² of the rows of a (k, n) matrix (Duong et al., 2015).

    Uses Σ_{t<t'} ‖θ_t − θ_t'‖² = k · Σ_t ‖θ_t − θ̄‖².
    """
    return stacked.shape[0] * (stacked - stacked.mean(0)).pow(2).sum()


def trace_coupling(stacked: torch.Tensor) -> torch.Tensor:
    """Trace (nuclear) norm of the (k, n) matrix of stacked task parameters (Yang & Hospedales, 2017)."""
    return torch.linalg.matrix_norm(stacked, ord="nuc")


COUPLINGS = {"l2": l2_coupling, "trace": trace_coupling}


@ARCHITECTURES.register("soft", aliases=("soft_sharing", "SoftSharing"),
                        paper="Duong et al., 2015; Yang & Hospedales, 2017")
class SoftSharing(MultiTaskModel):
    """One backbone per task; `penalty()` = weight · Σ_layers D(θ_1..θ_k) couples them.

    `coupling`: `l2` (pairwise squared distance, Duong et al., 2015) or `trace` (nuclear norm
    of the task-stacked layer matrix, Yang & Hospedales, 2017). `weight` has no paper default
    (it depends on the scale of the losses); 1e-2 is ours. No parameter is shared, so gradient
    aggregators and GradNorm have nothing to act on (the trainer refuses them): use a loss weighting.
    """

    def __init__(self, backbone: ModuleFactory, heads: Mapping[str, nn.Module],
                 coupling: str = "l2", weight: float = 1e-2) -> None:
        super().__init__(heads)
        if not isinstance(coupling, str) or coupling not in COUPLINGS:
            raise ConfigError(f"soft sharing: coupling {coupling!r} is not one of {sorted(COUPLINGS)}")
        self.columns = nn.ModuleDict({t: build(backbone, "backbone") for t in self.task_names})
        self.coupling = coupling
        self.weight = check_positive("soft sharing: weight", weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: head(self.columns[t](x)) for t, head in self.heads.items()}

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def penalty(self) -> torch.Tensor:
        """weight · Σ over each parameter tensor of the coupling of its k task copies (0 for one
        task: there is nothing to couple, so a single-task baseline trains unregularised)."""
        named = [dict(col.named_parameters()) for col in self.columns.values()]
        if len(named) < 2:
            return torch.zeros((), device=next(iter(named[0].values())).device)
        fn = COUPLINGS[self.coupling]
        total = sum(fn(torch.stack([p[name].reshape(-1) for p in named])) for name in named[0])
        return self.weight * total
