"""HAT's gated network (Serrà et al. 2018): per-task unit gates a = σ(s·e_t) on every weighted layer.

Each linear/conv layer's output units (channels) are multiplied by the task's gate; with ReLU
after the layer this equals gating the activation, since σ(·) ≥ 0. The slope `s` is set by the
strategy (annealed in training, s_max in evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.models.layer_list import device_of, is_weighted, units


class GatedNet(nn.Module):
    """The layer list with one task-embedding table (tasks × units) per weighted layer."""

    def __init__(self, layers: Sequence[nn.Module], n_tasks: int, generator: torch.Generator) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.gated = [i for i, m in enumerate(layers) if is_weighted(m)]
        device = device_of(self.layers)
        # e ~ N(0, 1), as nn.Embedding initialises the paper's task embeddings
        self.embeddings = nn.ParameterList([
            nn.Parameter(torch.randn(n_tasks, units(layers[i]), generator=generator).to(device))
            for i in self.gated])
        self.s = 1.0

    def gates(self, slots: torch.Tensor | int, s: float) -> list[torch.Tensor]:
        """σ(s·e) for the given slot(s), one tensor (…, units) per gated layer."""
        return [torch.sigmoid(s * e[slots]) for e in self.embeddings]

    def weighted_layers(self) -> list[nn.Module]:
        """The gated (linear/conv) layers in order."""
        return [self.layers[i] for i in self.gated]

    def forward(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        gates = iter(self.gates(slots, self.s))
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i in self.gated:
                a = next(gates)
                h = h * a.view(*a.shape, *([1] * (h.dim() - 2)))
        return h
