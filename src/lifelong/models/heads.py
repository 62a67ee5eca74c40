"""Classifier heads: one shared layer, one head per task, and a layer that grows with new classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.core.registries import HEADS


@HEADS.register("single", description="one linear layer over all classes")
class SingleHead(nn.Linear):
    """A linear classifier over every class of the stream."""

    takes_task = False

    def __init__(self, in_features: int, n_classes: int, task_classes: Sequence[Sequence[int]]) -> None:
        del task_classes
        super().__init__(in_features, n_classes)


@HEADS.register("multi", aliases=("multihead", "multi-head"),
                description="one linear head per task, selected by the task label")
class MultiHead(nn.Module):
    """One head per task (weights stacked as (tasks, classes, features)); other classes output 0.

    Every head runs on the batch and each sample takes its task's row, so a batch may mix tasks
    without a Python loop; gathering the outputs rather than the weights keeps the backward pass
    deterministic with several threads (scattering into repeated weight rows is not).
    """

    takes_task = True

    def __init__(self, in_features: int, n_classes: int, task_classes: Sequence[Sequence[int]]) -> None:
        super().__init__()
        n_tasks = len(task_classes)
        self.weight = nn.Parameter(torch.empty(n_tasks, n_classes, in_features))
        self.bias = nn.Parameter(torch.zeros(n_tasks, n_classes))
        bound = in_features ** -0.5
        nn.init.uniform_(self.weight, -bound, bound)
        mask = torch.zeros(n_tasks, n_classes)
        for t, classes in enumerate(task_classes):
            mask[t, list(classes)] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        every = torch.einsum("bf,tcf->btc", h, self.weight) + self.bias
        return every[torch.arange(len(t), device=t.device), t] * self.mask[t]


@HEADS.register("incremental", aliases=("growing", "incremental_classifier"),
                description="a linear layer that grows as new classes appear")
class IncrementalHead(nn.Module):
    """Linear classifier over the classes seen so far; `adapt` adds units, keeping old weights."""

    takes_task = False

    def __init__(self, in_features: int, n_classes: int, task_classes: Sequence[Sequence[int]]) -> None:
        super().__init__()
        del n_classes, task_classes
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(0, in_features))
        self.bias = nn.Parameter(torch.empty(0))

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def adapt(self, classes: Sequence[int]) -> bool:
        """Grow to cover `classes`; returns True when parameters were replaced (never for no class)."""
        width = max(classes, default=-1) + 1
        if width <= self.out_features:
            return False
        new = nn.Linear(self.in_features, width, dtype=self.weight.dtype)  # CPU draws: resumable
        new.to(self.weight.device)
        with torch.no_grad():
            new.weight[: self.out_features] = self.weight
            new.bias[: self.out_features] = self.bias
        self.weight, self.bias = new.weight, new.bias
        return True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        rows = state_dict.get(prefix + "weight")
        if rows is not None and rows.shape[0] > self.out_features:
            self.adapt(range(rows.shape[0]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(h, self.weight, self.bias)
