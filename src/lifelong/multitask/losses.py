"""Task kinds: each maps a task's outputs and targets to a loss and to summable metric statistics.

Metric statistics are sums (so they add over batches and processes); `finalize` turns them into
named metrics. `primary` names the metric used to compare runs, `higher_is_better` its direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lifelong.core.errors import DataError, LabelOutOfRangeError, ShapeMismatchError
from lifelong.core.registry import Registry
from lifelong.data.multitask import TaskSpec

TASK_KINDS: Registry = Registry("task kind")


@dataclass(frozen=True)
class TaskKind:
    """Loss, summable statistics and their finalisation for one kind of task."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    stats: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    finalize: Callable[[torch.Tensor], dict[str, float]]
    primary: str
    higher_is_better: bool
    class_dim: int | None = None  # dimension of the class scores; None for regression


def _accuracy_stats(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([(pred == y).sum().double(), torch.tensor(float(y.numel()), dtype=torch.float64)])


def _accuracy(stats: torch.Tensor) -> dict[str, float]:
    return {"accuracy": float(stats[0] / stats[1].clamp_min(1))}


def _token_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.movedim(-1, 1), y)


def _confusion(out: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    idx = y.reshape(-1) * n + out.argmax(1).reshape(-1)
    return torch.bincount(idx, minlength=n * n).double()


def _miou(stats: torch.Tensor) -> dict[str, float]:
    """Mean intersection-over-union over classes present in targets or predictions."""
    n = int(round(stats.numel() ** 0.5))
    conf = stats.view(n, n)
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    seen = union > 0
    return {
        "miou": float((inter[seen] / union[seen]).mean()) if bool(seen.any()) else 0.0,
        "pixel_accuracy": float(inter.sum() / conf.sum().clamp_min(1)),
    }


def _sse(out: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    del n
    diff = (out - y).double()
    return torch.stack([diff.pow(2).sum(), torch.tensor(float(y.numel()), dtype=torch.float64)])


def _register(name: str, description: str, kind: TaskKind) -> None:
    TASK_KINDS.register(name, description=description)(lambda: kind)


_register("ce", "classification, logits (N, C)", TaskKind(
    F.cross_entropy, lambda out, y, n: _accuracy_stats(out.argmax(1), y), _accuracy,
    "accuracy", True, class_dim=1))
_register("token-ce", "token classification, logits (N, L, C)", TaskKind(
    _token_ce, lambda out, y, n: _accuracy_stats(out.argmax(-1), y), _accuracy,
    "accuracy", True, class_dim=-1))
_register("pixel-ce", "segmentation, logits (N, C, H, W)", TaskKind(
    F.cross_entropy, _confusion, _miou, "miou", True, class_dim=1))
_register("mse", "regression of any shape", TaskKind(
    F.mse_loss, _sse, lambda s: {"mse": float(s[0] / s[1].clamp_min(1))}, "mse", False))


def task_kind(spec: TaskSpec) -> TaskKind:
    """The `TaskKind` of a task spec (unknown kinds fail with the known ones)."""
    return TASK_KINDS.build(spec.kind)


def check_targets(spec: TaskSpec, y: torch.Tensor, part: str) -> None:
    """Raise a typed error when a task's `part` ("train"/"test") targets cannot be scored: class labels
    that are not integers (DataError) or not in 0..n_outputs − 1 (LabelOutOfRangeError), or
    regression targets that are not finite (DataError)."""
    where = f"task {spec.name!r} ({spec.kind}): the {part} targets"
    if task_kind(spec).class_dim is None:
        if y.is_floating_point() and not bool(torch.isfinite(y).all()):
            raise DataError(f"{where} hold NaN or infinite values; drop or impute those samples")
        return
    if y.dtype not in (torch.long, torch.uint8):
        raise DataError(f"{where} are class labels but have dtype {y.dtype}; convert them with y.long()")
    low, high = (int(y.min()), int(y.max())) if y.numel() else (0, 0)
    if low < 0 or high >= spec.n_outputs:
        fix = "relabel them from 0" if low < 0 else f"relabel them or declare n_outputs >= {high + 1}"
        raise LabelOutOfRangeError(f"{where} hold labels {low}..{high}, outside 0..{spec.n_outputs - 1} for "
                                   f"its {spec.n_outputs} classes; {fix}")


def check_output(spec: TaskSpec, out: torch.Tensor, y: torch.Tensor) -> None:
    """Raise a ShapeMismatchError when a head's output cannot be scored against the targets: the same
    shape for regression, else the targets' shape with the classes inserted at the kind's class dim."""
    dim = task_kind(spec).class_dim
    expected = list(y.shape)
    if dim is not None:
        expected.insert(dim % (y.ndim + 1), spec.n_outputs)
    if tuple(out.shape) != tuple(expected):
        raise ShapeMismatchError(
            f"task {spec.name!r} ({spec.kind}): head output {tuple(out.shape)} does not fit targets "
            f"{tuple(y.shape)} with {spec.n_outputs} outputs (it should be {tuple(expected)}); build the "
            f"head with lifelong.multitask.heads.build_head for this task, or give targets of the "
            f"outputs' shape{' without the class dimension' if dim is not None else ''}"
        )
