"""Small models, streams and contexts shared by the regularisation-strategy tests.

The suite runs with --import-mode=importlib, so the helpers reach the tests through the `reg`
fixture rather than imports.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lifelong.continual.engine import Engine
from lifelong.continual.plugin import Context
from lifelong.data.stream import Experience, Stream
from lifelong.models import build_model

TASK_CLASSES = [(0, 1), (2, 3)]


def tiny_stream(setting: str = "task", n: int = 12, seed: int = 0, dtype=torch.float64) -> Stream:
    """Two experiences of 3x3 one-channel inputs with classes {0,1} then {2,3}."""
    gen = torch.Generator().manual_seed(seed)
    exps = []
    for i, classes in enumerate(TASK_CLASSES):
        x = torch.randn(n, 1, 3, 3, generator=gen, dtype=dtype)
        y = torch.tensor(classes)[torch.randint(0, 2, (n,), generator=gen)]
        exps.append(Experience(i, x, y, x[:4], y[:4], classes, i))
    return Stream(tuple(exps), setting, 4)


def tiny_model(head: str = "single", seed: int = 0) -> nn.Module:
    """MLP 9-5-4 in float64 (single or multi head)."""
    torch.manual_seed(seed)
    return build_model("mlp", (1, 3, 3), 4, TASK_CLASSES, head=head, hidden=(5,)).double()


def context(model: nn.Module, stream: Stream, index: int = 0, seed: int = 0) -> Context:
    """The context the engine would hand plugins for experience `index`."""
    return Engine(model, generator=torch.Generator().manual_seed(seed)).context(stream, index)


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def loop_grads(model: nn.Module, loss_of, n: int) -> list[torch.Tensor]:
    """Per-sample gradients by a Python loop over samples (the slow reference, tests only)."""
    out = []
    for i in range(n):
        loss = loss_of(i)
        params = list(model.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out.append(flat(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)))
    return out


def forward(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return model(x, t) if getattr(model, "takes_task", False) else model(x)


@pytest.fixture(scope="session")
def reg() -> SimpleNamespace:
    """The helpers above: tiny_stream, tiny_model, context, flat, loop_grads, forward."""
    return SimpleNamespace(tiny_stream=tiny_stream, tiny_model=tiny_model, context=context, flat=flat,
                           loop_grads=loop_grads, forward=forward)
