"""Progressive neural networks (Rusu et al. 2016): one column per task, lateral adapters between them.

Column k repeats the layer list; its weighted layer i (i ≥ 1) adds the lateral adapter
`U σ(V [α_1 h_1, …, α_k h_k])` of the activations h_j that earlier columns feed into their own
layer i (§2, "Adapters": α learned scalars, V a projection to `width` units — an n_{i−1}-dim
subspace by default — U the lateral weights; for convolutions V is 1×1 and U has the layer's
kernel). The first layer reads only the input. `forward(x, slots)` returns each sample's column.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.models.layer_list import device_of, is_weighted, reset_parameters


def _in_units(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


class LateralAdapter(nn.Module):
    """The non-linear lateral connection into one layer of a column from the `n_prev` columns before it."""

    def __init__(self, layer: nn.Module, n_prev: int, width: int | None, generator: torch.Generator) -> None:
        super().__init__()
        n_in = _in_units(layer)
        width = width or n_in
        if isinstance(layer, nn.Linear):
            self.v = nn.Linear(n_prev * n_in, width)
            self.u = nn.Linear(width, layer.out_features, bias=False)
        else:
            self.v = nn.Conv2d(n_prev * n_in, width, 1)
            self.u = nn.Conv2d(width, layer.out_channels, layer.kernel_size, layer.stride,
                               layer.padding, layer.dilation, bias=False)
        reset_parameters(self.v, generator)
        reset_parameters(self.u, generator)
        # α: "initialised by a random small value" (Rusu et al. 2016)
        self.alpha = nn.Parameter(torch.rand(n_prev, generator=generator) * 0.1)
        self.n_in = n_in

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        h = torch.cat(list(inputs), 1)
        scale = self.alpha.repeat_interleave(self.n_in).view(1, -1, *([1] * (h.dim() - 2)))
        return self.u(F.relu(self.v(h * scale)))


class ProgressiveNet(nn.Module):
    """Columns over one layer list; column 0 is `layers` itself, later columns are re-initialised copies."""

    def __init__(self, layers: Sequence[nn.Module], lateral_width: int | None = None) -> None:
        super().__init__()
        self.columns = nn.ModuleList([nn.ModuleList(layers)])
        self.laterals = nn.ModuleList([nn.ModuleList()])
        self.weighted = [i for i, m in enumerate(layers) if is_weighted(m)]
        self.lateral_width = lateral_width

    def add_column(self, generator: torch.Generator) -> None:
        """Append a freshly initialised column with its lateral adapters from every earlier column."""
        k = len(self.columns)
        device = device_of(self.columns[0])
        layers = [copy.deepcopy(m) for m in self.columns[0]]
        for i in self.weighted:
            reset_parameters(layers[i], generator)
        adapters = [LateralAdapter(layers[i], k, self.lateral_width, generator) for i in self.weighted[1:]]
        self.columns.append(nn.ModuleList(layers).requires_grad_(True).to(device))
        self.laterals.append(nn.ModuleList(adapters).to(device))

    def freeze(self) -> None:
        """Freeze every column and adapter (their parameters leave the optimiser)."""
        self.requires_grad_(False)

    def column_parameters(self, k: int) -> int:
        """Parameters that column k added: its layers and its lateral adapters."""
        return sum(p.numel() for m in (self.columns[k], self.laterals[k]) for p in m.parameters())

    def train(self, mode: bool = True) -> ProgressiveNet:
        """Frozen columns stay in evaluation mode (no dropout noise, no running-statistics updates)."""
        super().train(mode)
        for column in self.columns:
            if not any(p.requires_grad for p in column.parameters()):
                column.eval()
        return self

    def outputs(self, x: torch.Tensor, n: int) -> list[torch.Tensor]:
        """The outputs of columns 0..n-1 on `x` (column k needs every earlier column anyway)."""
        feeds: list[list[torch.Tensor]] = []  # feeds[j][w]: what column j fed its w-th weighted layer
        outs = []
        for k in range(n):
            h, mine = x, []
            for i, layer in enumerate(self.columns[k]):
                if i not in self.weighted:
                    h = layer(h)
                    continue
                w = len(mine)
                mine.append(h)
                z = layer(h)
                if k and w:
                    z = z + self.laterals[k][w - 1]([feed[w] for feed in feeds])
                h = z
            feeds.append(mine)
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        n = int(slots.max()) + 1
        outs = self.outputs(x, n)
        if bool((slots == n - 1).all()):
            return outs[-1]
        return torch.stack(outs)[slots, torch.arange(x.shape[0], device=x.device)]
