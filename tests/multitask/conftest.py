"""Small builders shared by the multi-task tests, as the `mtl` fixture (the suite runs with
--import-mode=importlib, so helpers are reached through a fixture, not an import)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lifelong.data.multitask import MultiTaskData, TaskSpec, TaskSplit, per_task, shared_inputs
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.weighting import build_weighting


def toy_shared(n: int = 64, d: int = 6, seed: int = 0) -> MultiTaskData:
    """Three tasks on one input: a 3-class label, a binary label and a regression target."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 32, d, generator=g)
    ys = {"a": (x[:, 0] > 0).long() + (x[:, 1] > 0).long(), "b": (x[:, 2] > 0).long(),
          "c": x[:, 3:4] * 2.0}
    tasks = (TaskSpec("a", "ce", 3), TaskSpec("b", "ce", 2), TaskSpec("c", "mse", 1))
    return shared_inputs("toy", tasks, x[:n], {k: v[:n] for k, v in ys.items()}, x[n:],
                         {k: v[n:] for k, v in ys.items()})


def toy_per_task(sizes: tuple[int, int] = (96, 40), d: int = 6, seed: int = 0) -> MultiTaskData:
    """Two classification tasks with their own inputs and sizes."""
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for name, n, col in (("p", sizes[0], 0), ("q", sizes[1], 1)):
        x = torch.randn(n + 20, d, generator=g)
        y = (x[:, col] > 0).long()
        splits[name] = TaskSplit(x[:n], y[:n], x[n:], y[n:])
    return per_task("toy-per-task", (TaskSpec("p", "ce", 2), TaskSpec("q", "ce", 2)), splits)


def mlp(d: int = 6, width: int = 16) -> nn.Sequential:
    """A one-hidden-layer trunk."""
    return nn.Sequential(nn.Linear(d, width), nn.ReLU())


def trainer(data: MultiTaskData, weighting: str = "uniform", arch: str = "hps", seed: int = 0,
            **cfg) -> MultiTaskTrainer:
    """`arch` on the `mlp` trunk with `weighting`, one epoch of SGD at lr 0.1 in batches of 16
    unless `cfg` says otherwise (seeded)."""
    torch.manual_seed(seed)
    model = build_architecture(arch, data, lambda: mlp(data.input_shape[0]))
    config = TrainConfig(**{"epochs": 1, "batch_size": 16, "lr": 0.1, "optimizer": "sgd", **cfg})
    return MultiTaskTrainer(model, build_weighting(weighting, len(data.tasks)), data, config,
                            torch.Generator().manual_seed(seed))


def flat(params) -> torch.Tensor:
    """The parameters' values as one flat vector."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@pytest.fixture
def mtl() -> SimpleNamespace:
    """`mtl.toy_shared()`, `mtl.toy_per_task()`, `mtl.mlp()`, `mtl.trainer()`, `mtl.flat()`."""
    return SimpleNamespace(toy_shared=toy_shared, toy_per_task=toy_per_task, mlp=mlp, trainer=trainer, flat=flat)
