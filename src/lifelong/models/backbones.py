"""Feature extractors: MLP, LeNet-style CNN and the reduced ResNet-18; each exposes `out_features`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.checks import check_count, check_list, check_positive
from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.core.registries import BACKBONES


@BACKBONES.register("mlp", description="fully connected ReLU network on flattened inputs")
class MLP(nn.Module):
    """Flatten → [Linear → ReLU] per hidden width (default 400-400, as in the EWC/SI papers)."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (400, 400),
                 dropout: float = 0.0) -> None:
        super().__init__()
        hidden = [check_count("mlp: each hidden width", h)
                  for h in check_list("mlp: hidden", hidden, "a list of layer widths, e.g. [400, 400]")]
        dropout = check_positive("mlp: dropout", dropout)
        if dropout >= 1:
            raise ConfigError(f"mlp: dropout is a probability in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def image_shape(what: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """`input_shape` as (channels, height, width); a ShapeMismatchError for anything else."""
    if len(input_shape) != 3:
        raise ShapeMismatchError(f"{what} convolves images of per-sample shape (channels, height, width), but the "
                                 f"inputs have shape {tuple(input_shape)}; use 'mlp' for flat inputs, or reshape "
                                 "them to images")
    return tuple(input_shape)


@BACKBONES.register("lenet", aliases=("cnn",), description="LeNet-style CNN (2 conv + 1 dense)")
class LeNet(nn.Module):
    """Conv(20,5) → pool → Conv(50,5) → pool → Linear(500), padding keeping small inputs valid."""

    def __init__(self, input_shape: Sequence[int], width: int = 500) -> None:
        super().__init__()
        check_count("lenet: width", width)
        channels, height, wide = image_shape("lenet", input_shape)
        pad = 2 if min(height, wide) < 16 else 0
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 20, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(20, 50, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *input_shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, width), nn.ReLU())
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@BACKBONES.register("resnet18", aliases=("reduced_resnet18", "resnet18-reduced"),
                    description="reduced ResNet-18 (nf=20) of GEM, for 32x32 images")
class ReducedResNet18(nn.Module):
    """ResNet-18 with `nf` base filters (20 in Lopez-Paz & Ranzato 2017), global average pooled."""

    def __init__(self, input_shape: Sequence[int], nf: int = 20) -> None:
        super().__init__()
        check_count("resnet18: nf", nf)
        self.stem = nn.Sequential(nn.Conv2d(image_shape("resnet18", input_shape)[0], nf, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(nf), nn.ReLU())
        blocks, cin = [], nf
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            blocks += [_BasicBlock(cin, nf * mult, stride), _BasicBlock(nf * mult, nf * mult, 1)]
            cin = nf * mult
        self.blocks = nn.Sequential(*blocks)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)
