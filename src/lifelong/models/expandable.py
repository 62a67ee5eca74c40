"""DEN's expandable network (Yoon et al. 2018): ReLU layers whose units carry timestamps, one head per task.

Every hidden unit records the task slot that added it; task u computes with the units stamped
≤ u only (timestamped inference), so units added or duplicated later never change an earlier
task's outputs. Each task has its own output head over the last hidden layer. Units are added
(`append_units`) and removed (`keep_units`) by replacing the affected parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.models.layer_list import reset_parameters


class ExpandableMLP(nn.Module):
    """Hidden layers `widths[1:]` over `widths[0]` inputs, and per-task heads of `n_classes` outputs."""

    def __init__(self, widths: Sequence[int], n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(o, i)) for i, o in pairwise(widths)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(o)) for o in widths[1:]])
        for layer, width in enumerate(widths[1:]):
            self.register_buffer(f"stamp_{layer}", torch.zeros(width, dtype=torch.long))
        self.head_weights = nn.ParameterList()
        self.head_biases = nn.ParameterList()

    @classmethod
    def from_linears(cls, linears: Sequence[nn.Linear], n_classes: int) -> ExpandableMLP:
        """A network starting from the weights of an MLP's linear layers."""
        net = cls([linears[0].in_features, *(m.out_features for m in linears)], n_classes)
        with torch.no_grad():
            for w, b, m in zip(net.weights, net.biases, linears, strict=True):
                w.copy_(m.weight)
                b.copy_(m.bias)
        return net.to(linears[0].weight.device)

    @property
    def n_layers(self) -> int:
        """Number of hidden layers."""
        return len(self.weights)

    def stamp(self, layer: int) -> torch.Tensor:
        """The task slot that added each unit of hidden layer `layer`."""
        return getattr(self, f"stamp_{layer}")

    def widths(self) -> list[int]:
        """Input width, then the width of every hidden layer."""
        return [self.weights[0].shape[1], *(w.shape[0] for w in self.weights)]

    def add_head(self, generator: torch.Generator) -> None:
        """A new task head, initialised as a fresh nn.Linear."""
        head = reset_parameters(nn.Linear(self.weights[-1].shape[0], self.n_classes), generator)
        device = self.weights[0].device
        self.head_weights.append(nn.Parameter(head.weight.detach().to(device)))
        self.head_biases.append(nn.Parameter(head.bias.detach().to(device)))

    def hidden(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """The last hidden layer, each sample seeing only the units of its task or earlier."""
        h = x.flatten(1)
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = F.relu(F.linear(h, w, b)) * (self.stamp(layer)[None, :] <= slots[:, None])
        return h

    def forward(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x, slots)
        present = slots.unique()
        if present.numel() == 1:
            u = int(present)
            return F.linear(h, self.head_weights[u], self.head_biases[u])
        n = int(slots.max()) + 1
        weights = torch.stack(list(self.head_weights[:n]))[slots]
        biases = torch.stack(list(self.head_biases[:n]))[slots]
        return torch.einsum("bf,bcf->bc", h, weights) + biases

    def _replace(self, params: nn.ParameterList, index: int, value: torch.Tensor) -> None:
        params[index] = nn.Parameter(value.detach().clone())

    def append_units(self, layer: int, w_in: torch.Tensor, b: torch.Tensor, w_out: torch.Tensor,
                     stamp: int) -> None:
        """Add units to hidden `layer`: incoming rows `w_in`, biases `b`, outgoing columns `w_out`
        (into the next layer, or into the head of task `stamp` for the last layer; other heads get 0)."""
        n = w_in.shape[0]
        self._replace(self.weights, layer, torch.cat([self.weights[layer], w_in]))
        self._replace(self.biases, layer, torch.cat([self.biases[layer], b]))
        stamps = self.stamp(layer)
        setattr(self, f"stamp_{layer}", torch.cat([stamps, stamps.new_full((n,), stamp)]))
        if layer + 1 < self.n_layers:
            self._replace(self.weights, layer + 1, torch.cat([self.weights[layer + 1], w_out], 1))
            return
        for u, head in enumerate(self.head_weights):
            cols = w_out if u == stamp else head.new_zeros(head.shape[0], n)
            self._replace(self.head_weights, u, torch.cat([head, cols], 1))

    def keep_units(self, layer: int, keep: torch.Tensor) -> None:
        """Keep only the units of hidden `layer` where the boolean mask `keep` holds."""
        self._replace(self.weights, layer, self.weights[layer][keep])
        self._replace(self.biases, layer, self.biases[layer][keep])
        setattr(self, f"stamp_{layer}", self.stamp(layer)[keep])
        if layer + 1 < self.n_layers:
            self._replace(self.weights, layer + 1, self.weights[layer + 1][:, keep])
            return
        for u, head in enumerate(self.head_weights):
            self._replace(self.head_weights, u, head[:, keep])
