"""Meta-continual networks: a slow part computed once per input and a fast part that learns online.

`MetaContinualNet.context(x)` is the slow part (OML's representation network, ANML's
neuromodulatory gate): it is frozen while the fast part (`.fast`, the prediction network) takes
SGD steps on fast weights, so the inner loop computes it once per trajectory.
`forward(x) = fast(*context(x))`; `features(x)` is the representation prototypes are built on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.core.checks import check_counts
from lifelong.models.backbones import MLP


def linear_head(input_shape: Sequence[int], hidden: int, layers: int, n_outputs: int
                ) -> nn.Sequential:
    """`layers` - 1 ReLU layers of width `hidden` (the library's MLP), then a linear output layer."""
    check_counts("linear_head", layers=layers, hidden=hidden, n_outputs=n_outputs)
    body = MLP(input_shape, hidden=(hidden,) * (layers - 1))
    return nn.Sequential(body, nn.Linear(body.out_features, n_outputs))


class MetaContinualNet(nn.Module):
    """Base of OML and ANML networks: `forward(x) = fast(*context(x))`."""

    fast: nn.Module

    def context(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Inputs of the fast part computed by the slow part (frozen in the inner loop)."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the prediction head reads (used by prototypes)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fast(*self.context(x))

    @property
    def head_keys(self) -> tuple[str, str]:
        """Names in `fast` of the output layer's weight and bias (the rows OML/ANML reset)."""
        linears = [n for n, m in self.fast.named_modules() if isinstance(m, nn.Linear)]
        return f"{linears[-1]}.weight", f"{linears[-1]}.bias"


class OMLNet(MetaContinualNet):
    """OML (Javed & White 2019): representation network (RLN) + prediction network (PLN)."""

    def __init__(self, rln: nn.Module, pln: nn.Module) -> None:
        super().__init__()
        self.rln = rln
        self.fast = pln

    def context(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.rln(x),)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.rln(x)


class GatedPredictor(nn.Module):
    """ANML's prediction network: `head(features(x) * gate)` for a gate given from outside."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x) * gate)


class ANMLNet(MetaContinualNet):
    """ANML (Beaulieu et al. 2020): a neuromodulatory net gates the prediction net's activations.

    The gate is `sigmoid(nm(x))`, multiplied element-wise into the prediction network's
    representation before its output layer, as in the paper.
    """

    def __init__(self, nm: nn.Module, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.nm = nm
        self.fast = GatedPredictor(features, head)

    def context(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x, torch.sigmoid(self.nm(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fast.features(x) * torch.sigmoid(self.nm(x))


def oml_mlp(input_shape: Sequence[int], n_outputs: int, hidden: int = 300, rln_layers: int = 6,
            pln_layers: int = 2) -> OMLNet:
    """OML network of MLPs; defaults are the paper's sine-wave net (6 RLN + 2 PLN layers of 300)."""
    check_counts("oml", hidden=hidden, rln_layers=rln_layers, pln_layers=pln_layers,
                 n_outputs=n_outputs)
    rln = MLP(input_shape, hidden=(hidden,) * rln_layers)
    return OMLNet(rln, linear_head((hidden,), hidden, pln_layers, n_outputs))


def anml_mlp(input_shape: Sequence[int], n_outputs: int, hidden: int = 256, layers: int = 2
             ) -> ANMLNet:
    """ANML network of MLPs: NM and prediction nets of `layers` layers, gate of width `hidden`.

    The NM net ends linear (its output goes through the sigmoid); the gated representation is
    the prediction net's last ReLU layer, read by one linear output layer, as in the paper.
    """
    check_counts("anml", hidden=hidden, layers=layers, n_outputs=n_outputs)
    features = MLP(input_shape, hidden=(hidden,) * layers)
    return ANMLNet(linear_head(input_shape, hidden, layers, hidden), features,
                   nn.Linear(hidden, n_outputs))
