"""Task heads for multi-task models: per-sample vectors, per-token and dense per-pixel outputs.

Every head takes the per-sample feature shape of the trunk below it (without the batch
dimension), so one architecture can carry classification, regression, token-level and dense
tasks at once. `build_heads` picks the head each task of a data set needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import ShapeMismatchError
from lifelong.core.registry import Registry
from lifelong.data.multitask import MultiTaskData, TaskSpec

TASK_HEADS: Registry = Registry("task head")


def _mlp(dims: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return layers


@TASK_HEADS.register("vector", aliases=("classification", "regression", "tower"))
def vector_head(in_shape: Sequence[int], n_outputs: int, hidden: int | None = None) -> nn.Module:
    """Flatten the features, optional hidden ReLU layer (an MMoE 'tower'), then a linear map."""
    dims = [math.prod(in_shape), *([hidden] if hidden else []), n_outputs]
    return nn.Sequential(nn.Flatten(), *_mlp(dims))


@TASK_HEADS.register("token", aliases=("sequence",))
def token_head(in_shape: Sequence[int], n_outputs: int, hidden: int | None = None) -> nn.Module:
    """Per-token scores: features (L, D) → (L, n_outputs) by a position-wise MLP."""
    if len(in_shape) != 2:
        raise ShapeMismatchError(f"token head needs (length, dim) features, got {tuple(in_shape)}")
    return nn.Sequential(*_mlp([in_shape[-1], *([hidden] if hidden else []), n_outputs]))


class DenseHead(nn.Module):
    """Per-pixel outputs: 1×1 convolutions on (C, H, W) features, resized to the target size."""

    def __init__(self, in_shape: Sequence[int], n_outputs: int, out_size: Sequence[int] | None = None,
                 hidden: int | None = None) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ShapeMismatchError(f"dense head needs (C, H, W) features, got {tuple(in_shape)}")
        chans = [in_shape[0], *([hidden] if hidden else []), n_outputs]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers.append(nn.Conv2d(a, b, kernel_size=1))
            if i < len(chans) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.out_size = tuple(out_size) if out_size is not None else tuple(in_shape[1:])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if tuple(out.shape[-2:]) != self.out_size:
            out = F.interpolate(out, size=self.out_size, mode="bilinear", align_corners=False)
        return out


TASK_HEADS.register("dense", aliases=("pixel",))(DenseHead)


def head_name(spec: TaskSpec, target_shape: Sequence[int]) -> str:
    """The head a task needs: dense for per-pixel targets, token for sequences, else vector."""
    if spec.kind == "pixel-ce" or (spec.kind == "mse" and len(target_shape) >= 3):
        return "dense"
    return "token" if spec.kind == "token-ce" else "vector"


def build_head(spec: TaskSpec, in_shape: Sequence[int], target_shape: Sequence[int],
               hidden: int | None = None) -> nn.Module:
    """The head for `spec` on features of per-sample shape `in_shape`."""
    name = head_name(spec, target_shape)
    kwargs = {"hidden": hidden}
    if name == "dense":
        kwargs["out_size"] = tuple(target_shape[-2:])
    return TASK_HEADS.build(name, tuple(in_shape), spec.n_outputs, **kwargs)


def build_heads(data: MultiTaskData, in_shape: Sequence[int], hidden: int | None = None
                ) -> dict[str, nn.Module]:
    """One head per task of `data`, on trunk features of per-sample shape `in_shape`."""
    return {
        t.name: build_head(t, in_shape, tuple(data.splits[t.name].train_y.shape[1:]), hidden)
        for t in data.tasks
    }


def reads_indices(module: nn.Module) -> bool:
    """Whether `module` reads integer indices (token IDs): its first layer is an embedding."""
    first = next((m for m in module.modules() if next(m.children(), None) is None), None)
    return isinstance(first, nn.Embedding | nn.EmbeddingBag)


@torch.no_grad()
def feature_shape(module: nn.Module, input_shape: Sequence[int], dtype: torch.dtype | None = None) -> tuple[int, ...]:
    """Per-sample output shape of `module` on zeros of per-sample shape `input_shape` and the inputs' `dtype`
    (default: that of the module's parameters)."""
    was_training = module.training
    module.eval()
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else None
        if dtype is None and param is not None and param.is_floating_point():
            dtype = param.dtype
        out = module(torch.zeros(2, *input_shape, device=device, dtype=dtype))
    finally:
        module.train(was_training)
    return tuple(out.shape[1:])
