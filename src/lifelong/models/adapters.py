"""Per-task adapters on a layer list: bottleneck adapters (Houlsby et al. 2019) and LoRA (Hu et al. 2021).

An adapter maps (layer input x, layer output y) to a new output: the bottleneck adapter returns
y + U σ(D y) (near-identity at initialisation), LoRA returns y + (α/r) B A x (B = 0 at
initialisation). `AdaptedNet` keeps one adapter set per task on every linear layer and applies
each sample's task set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.models.layer_list import device_of

AdapterFactory = Callable[[nn.Linear, torch.Generator], nn.Module]


class Bottleneck(nn.Module):
    """y + up(GELU(down(y))): a `size`-unit bottleneck, weights ~ N(0, 1e-2²) truncated at 2σ, biases 0."""

    def __init__(self, layer: nn.Linear, generator: torch.Generator, *, size: int) -> None:
        super().__init__()
        self.down = nn.Linear(layer.out_features, size)
        self.up = nn.Linear(size, layer.out_features)
        with torch.no_grad():
            for lin in (self.down, self.up):
                nn.init.trunc_normal_(lin.weight, std=1e-2, a=-2e-2, b=2e-2, generator=generator)
                lin.bias.zero_()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        del x
        return y + self.up(F.gelu(self.down(y)))


class LoRA(nn.Module):
    """y + (alpha/rank) · x Aᵀ Bᵀ: A Kaiming-uniform, B zero, so training starts from the frozen layer."""

    def __init__(self, layer: nn.Linear, generator: torch.Generator, *, rank: int, alpha: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.empty(rank, layer.in_features))
        self.b = nn.Parameter(torch.zeros(layer.out_features, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5), generator=generator)
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y + self.scale * F.linear(F.linear(x, self.a), self.b)


def per_slot(slots: torch.Tensor, fn: Callable[..., torch.Tensor], rows_of: Sequence[torch.Tensor]) -> torch.Tensor:
    """fn(slot, *rows) for each slot present in `slots`, each result written back to its rows."""
    present = slots.unique()
    if present.numel() == 1:
        return fn(int(present), *rows_of)
    out = None
    for s in present.tolist():
        idx = (slots == s).nonzero().squeeze(1)
        part = fn(s, *(r[idx] for r in rows_of))
        out = part.new_zeros((slots.shape[0], *part.shape[1:])) if out is None else out
        out = out.index_copy(0, idx, part)
    return out


class AdaptedNet(nn.Module):
    """A layer list with one set of adapters per task on its linear layers (each sample uses its task's)."""

    def __init__(self, layers: Sequence[nn.Module], factory: AdapterFactory) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.adapted = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
        self.factory = factory
        self.tasks = nn.ModuleList()

    def add_task(self, generator: torch.Generator) -> nn.Module:
        """A new adapter set (one adapter per linear layer), returned for the caller to train."""
        device = device_of(self.layers)
        adapters = nn.ModuleList([self.factory(self.layers[i], generator) for i in self.adapted]).to(device)
        self.tasks.append(adapters)
        return adapters

    def forward(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            y = layer(h)
            if i in self.adapted:
                k = self.adapted.index(i)
                y = per_slot(slots, lambda s, xi, yi, k=k: self.tasks[s][k](xi, yi), (h, y))
            h = y
        return h
