"""Continual evaluation of an online learner on a meta-test stream: metric matrix and forgetting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from lifelong.continual.metrics import average_accuracy, forgetting
from lifelong.meta.benchmark import MetaBenchmark


class Learner(Protocol):
    """What the evaluation needs: learn from samples in order, and score inputs."""

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> None: ...

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class StreamResult:
    """The metric matrix R of a stream, as in `lifelong.continual.metrics`: T+1 rows, T columns.

    `matrix[i, j]` is the metric on task j after learning tasks 1..i (row 0: before any).
    """

    metric: str
    higher_is_better: bool
    matrix: torch.Tensor

    @property
    def final(self) -> float:
        """Mean metric over every task after the whole stream (accuracy or MSE over all seen)."""
        return average_accuracy(self.matrix)

    @property
    def forgetting(self) -> float:
        """Mean drop from each earlier task's best metric to its final one (Chaudhry et al. 2018).

        For a lower-is-better metric (MSE) it is computed on -R, so forgetting is positive when
        a task got worse either way.
        """
        return forgetting(self.matrix if self.higher_is_better else -self.matrix)

    def to_dict(self) -> dict:
        """Plain values for results.json."""
        return {"metric": self.metric, "final": self.final, "forgetting": self.forgetting,
                "matrix": self.matrix.tolist()}


def run_stream(learner: Learner, bench: MetaBenchmark) -> StreamResult:
    """Learn the benchmark's tasks in order, scoring every task before and after each one.

    Each scoring is one `predict` on every task's test set at once, split back per task.
    """
    obj = bench.objective
    seen = torch.zeros(bench.n_outputs, dtype=torch.bool)  # classes met so far
    test_x = torch.cat([t.test_x for t in bench.tasks])
    sizes = [t.test_x.shape[0] for t in bench.tasks]

    def row() -> list[float]:
        outputs = learner.predict(test_x).split(sizes)
        return [obj.metric(out, t.test_y, seen) for out, t in zip(outputs, bench.tasks, strict=True)]

    rows = [row()]
    for task in bench.tasks:
        learner.observe(task.train_x, task.train_y)
        if not task.train_y.dtype.is_floating_point:
            seen[task.train_y.unique()] = True
        rows.append(row())
    return StreamResult(obj.metric_name, obj.higher_is_better,
                        torch.tensor(rows, dtype=torch.float64))
