"""Streams, models and snapshots shared by the architecture-strategy tests.

The suite runs with --import-mode=importlib, so the helpers reach the tests through the `arch`
fixture rather than imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from lifelong.continual.engine import Engine
from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.data.scenarios import build_benchmark
from lifelong.data.stream import Stream
from lifelong.models import build_model


def digits(setting: str = "task", n: int = 3) -> Stream:
    """The first `n` experiences of Split digits (8x8 images, 2 classes each)."""
    return build_benchmark("split-digits", setting)[:n]


def mlp(stream: Stream, hidden: Sequence[int] = (16,), head: str = "single", seed: int = 0,
        backbone: str = "mlp", **kwargs) -> nn.Module:
    """A seeded classifier for `stream`."""
    torch.manual_seed(seed)
    if backbone == "mlp":
        kwargs["hidden"] = tuple(hidden)
    return build_model(backbone, stream.input_shape, stream.n_classes, stream.task_classes(), head=head, **kwargs)


def engine(model: nn.Module, plugins: Sequence[Plugin], epochs: int = 1, batch_size: int = 64,
           seed: int = 0, **kwargs) -> Engine:
    return Engine(model, list(plugins), epochs=epochs, batch_size=batch_size,
                  generator=torch.Generator().manual_seed(seed), **kwargs)


def snapshot(named) -> dict[str, torch.Tensor]:
    """Detached copies of (name, tensor) pairs."""
    return {n: t.detach().clone() for n, t in named}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same names and bit-identical values."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_one(eng: Engine, stream: Stream, index: int) -> None:
    """Train experience `index` of `stream` (every hook, no evaluation), so a test can look between experiences."""
    eng.train_experience(eng.context(stream, index))


class Probe(Plugin):
    """Listed after a strategy: keeps what `at_start()` returns once the strategies before it prepared
    each experience (`started`), and what `at_step()` returns after every training step (`stepped`)."""

    def __init__(self, at_start: Callable[[], Any] | None = None, at_step: Callable[[], Any] | None = None) -> None:
        self.at_start, self.at_step = at_start, at_step
        self.started: list[Any] = []
        self.stepped: list[Any] = []

    def before_experience(self, ctx: Context) -> None:
        if self.at_start is not None:
            self.started.append(self.at_start())

    def after_step(self, ctx: Context, batch: Batch) -> None:
        if self.at_step is not None:
            self.stepped.append(self.at_step())


@pytest.fixture(scope="session")
def arch() -> SimpleNamespace:
    """The helpers above: `digits`, `mlp`, `engine`, `snapshot`, `identical`, `train_one`, `Probe`."""
    return SimpleNamespace(digits=digits, mlp=mlp, engine=engine, snapshot=snapshot, identical=identical,
                           train_one=train_one, Probe=Probe)
