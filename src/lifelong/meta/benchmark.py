"""What a meta-continual benchmark hands to a method: meta-training episodes and a meta-test stream.

An `Episode` is a batch of meta-training trajectories (leading dimension: episodes) with their
"remember" sets (Javed & White 2019); a `Task` is one step of the meta-test stream (one sine
function, one class); an `Objective` says how outputs are scored (MSE or accuracy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Episode:
    """Meta-training trajectories: `traj_*` (E, K, b, ...) learned in order, then `remember_*`.

    `keep` (E, n_outputs) is 0 for output rows reset to zero before the trajectory (the classes
    it introduces) and 1 elsewhere.
    """

    traj_x: torch.Tensor
    traj_y: torch.Tensor
    remember_x: torch.Tensor
    remember_y: torch.Tensor
    keep: torch.Tensor

    def outer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of the meta-loss: the whole trajectory plus the remember set."""
        x = torch.cat([self.traj_x.flatten(1, 2), self.remember_x], dim=1)
        y = torch.cat([self.traj_y.flatten(1, 2), self.remember_y], dim=1)
        return x, y


@dataclass(frozen=True)
class Task:
    """One step of the meta-test stream: samples learned online, then held-out test samples."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass(frozen=True)
class Objective:
    """Training criterion and evaluation metric of a kind of benchmark."""

    kind: str
    metric_name: str
    higher_is_better: bool
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]


def _mse(outputs: torch.Tensor, y: torch.Tensor, seen: torch.Tensor) -> float:
    return float(F.mse_loss(outputs, y))


def _accuracy(outputs: torch.Tensor, y: torch.Tensor, seen: torch.Tensor) -> float:
    """Accuracy of the argmax over the classes seen so far (`seen`: boolean per output), ties broken at
    random in expectation: a row of equal scores (before any class is seen, or zeroed output rows) is
    right with probability 1/ties, not always for class 0 as argmax would have it."""
    masked = outputs.masked_fill(~seen, torch.finfo(outputs.dtype).min)
    top = masked == masked.max(dim=1, keepdim=True).values
    return float((top.gather(1, y[:, None]).squeeze(1) / top.sum(1)).mean())


REGRESSION = Objective("regression", "mse", False, F.mse_loss, _mse)
CLASSIFICATION = Objective("classification", "accuracy", True, F.cross_entropy, _accuracy)


@dataclass(frozen=True)
class MetaBenchmark:
    """Meta-training data (episodes and an i.i.d. pre-training set) and a meta-test stream.

    `online_lr`, `online_batch` and `reset_head` define how every method learns the meta-test
    stream (SGD step size; samples per step; output rows zeroed first, for new classes), so
    meta-learned nets and baselines learn it the same way.
    """

    name: str
    objective: Objective
    input_shape: tuple[int, ...]
    n_outputs: int
    sample: Callable[[torch.Generator, int], Episode]
    pretrain_x: torch.Tensor
    pretrain_y: torch.Tensor
    tasks: tuple[Task, ...]
    online_lr: float
    online_batch: int = 1
    reset_head: bool = False
