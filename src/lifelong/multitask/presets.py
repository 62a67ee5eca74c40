"""Default trunks for the built-in benchmarks: an MLP for per-sample tasks, a small fully
convolutional net when a task needs dense (per-pixel) outputs."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from lifelong.core.checks import check_counts
from lifelong.core.registries import ARCHITECTURES
from lifelong.data.multitask import MultiTaskData
from lifelong.models import MLP
from lifelong.multitask.architectures import MultiTaskModel, build_architecture
from lifelong.multitask.architectures.base import ModuleFactory
from lifelong.multitask.heads import head_name


def conv_trunk(channels: int, width: int, depth: int = 2) -> nn.Sequential:
    """`depth` 3×3 convolutions with ReLU keeping the spatial size (dense tasks)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(channels if i == 0 else width, width, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def needs_dense(data: MultiTaskData) -> bool:
    """Whether any task of `data` needs a dense head."""
    return any(head_name(t, tuple(data.splits[t.name].train_y.shape[1:])) == "dense"
               for t in data.tasks)


def default_trunks(data: MultiTaskData, width: int = 64, depth: int = 2
                   ) -> tuple[ModuleFactory, ModuleFactory]:
    """(trunk, upper trunk): the first reads the inputs, the second its own outputs (PLE levels)."""
    check_counts("multi-task trunk", width=width, depth=depth)
    shape: Sequence[int] = data.input_shape
    if needs_dense(data):
        return (lambda: conv_trunk(shape[0], width, depth)), (lambda: conv_trunk(width, width, 1))
    hidden = (width,) * depth
    return (lambda: MLP(shape, hidden).net), (lambda: MLP((width,), (width,)).net)


def build_default(arch: str, data: MultiTaskData, width: int = 64, depth: int = 2,
                  **arch_args: Any) -> MultiTaskModel:
    """`arch` on `data` with the default trunks (upper trunks for architectures that stack levels)."""
    trunk, upper = default_trunks(data, width, depth)
    if "upper_expert" in inspect.signature(ARCHITECTURES.get(arch)).parameters:
        arch_args.setdefault("upper_expert", upper)
    return build_architecture(arch, data, trunk, **arch_args)


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(math.prod(p.shape) for p in model.parameters() if p.requires_grad)
