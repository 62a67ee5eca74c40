"""What the parameter-isolation strategies share about task identity.

Task slots (the order in which tasks arrived, which indexes columns, masks, gates and adapters),
task inference by lowest entropy for class-incremental evaluation, and the guard that keeps a
shared head's rows of other tasks' classes untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lifelong.continual.plugin import Context
from lifelong.core.errors import IncompatibleError
from lifelong.models.routed import Routed


class TaskSlots:
    """Arrival order of task labels: slot i serves the i-th task trained; each task trains once."""

    def __init__(self, labels: Sequence[int] = ()) -> None:
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, task: int, strategy: str) -> int:
        """The slot of a newly arrived task."""
        if task in self.labels:
            raise IncompatibleError(
                f"{strategy} gives every task its own parameters and trains it once, but task "
                f"{task} arrived again (tasks so far: {self.labels}); give each experience its own "
                "task label")
        self.labels.append(int(task))
        return len(self.labels) - 1

    def of(self, t: torch.Tensor) -> torch.Tensor:
        """Slot of each task label; a task not trained yet is served by the newest slot."""
        size = max(max(self.labels), int(t.max())) + 1
        table = torch.full((size,), len(self.labels) - 1, dtype=torch.long, device=t.device)
        table[torch.tensor(self.labels, device=t.device)] = torch.arange(len(self.labels), device=t.device)
        return table[t]


def infer_by_entropy(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Class scores (B, C) from per-task logits (U, B, C): each sample takes the task whose softmax
    over its own classes (`allowed`, U × C) is the most confident (lowest entropy).

    Entropy-based task inference as in von Oswald et al. 2020 (HNET+ENT). Classes outside the
    chosen task get the lowest score.
    """
    low = torch.finfo(logits.dtype).min
    masked = logits.masked_fill(~allowed[:, None, :], low)
    log_p = masked.log_softmax(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    best = entropy.argmin(0)
    return masked[best, torch.arange(logits.shape[1], device=logits.device)]


def slot_classes(ctx: Context, labels: Sequence[int]) -> torch.Tensor:
    """Boolean (slots × classes) mask of the classes of each slot's task."""
    return ctx.stream.class_mask().to(ctx.device)[torch.tensor(list(labels), device=ctx.device)]


def infer_task(ctx: Context, router: Routed, slots: TaskSlots, x: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
    """Class scores with the task inferred by entropy: one forward of `x` repeated once per slot."""
    n = len(slots)
    router.route(torch.arange(n, device=x.device).repeat_interleave(x.shape[0]))
    logits = ctx.forward(x.repeat(n, *([1] * (x.dim() - 1))), t.repeat(n)).view(n, x.shape[0], -1)
    return infer_by_entropy(logits, slot_classes(ctx, slots.labels)[:, : logits.shape[2]])


def route_or_infer(ctx: Context, router: Routed | None, slots: TaskSlots, infer: bool, x: torch.Tensor,
                   t: torch.Tensor) -> torch.Tensor | None:
    """A routed strategy's `predict`: route by task label (None: the engine then runs the model),
    or class scores with the task inferred by entropy; None before the first task."""
    if router is None:
        return None
    if infer:
        return infer_task(ctx, router, slots, x, t)
    router.route(slots.of(t))
    return None


def check_shared_head(ctx: Context, strategy: str) -> None:
    """Refuse a single head when tasks share classes: its rows would be retrained by every task."""
    if getattr(ctx.model, "takes_task", False):
        return
    mask = ctx.stream.class_mask()
    if bool((mask.sum(0) > 1).any()):
        raise IncompatibleError(
            f"{strategy} keeps each task's output apart, but tasks of this stream share classes "
            "and the model has one shared head; build the model with head='multi'")


def freeze_other_classes(model: nn.Module, classes: Sequence[int]) -> None:
    """Zero the gradient of a shared head's rows outside `classes` (the current task's)."""
    head = getattr(model, "head", None)
    if head is None or getattr(head, "takes_task", False) or not hasattr(head, "weight"):
        return
    keep = torch.zeros(head.weight.shape[0], dtype=torch.bool, device=head.weight.device)
    keep[[c for c in classes if c < keep.shape[0]]] = True
    for p in (head.weight, getattr(head, "bias", None)):
        if p is not None and p.grad is not None:
            p.grad[~keep] = 0
