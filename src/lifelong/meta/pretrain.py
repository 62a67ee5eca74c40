"""Joint pre-training: the baseline OML and ANML are compared against (Javed & White 2019, §4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lifelong.core.errors import ShapeMismatchError


def pretrain(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, epochs: int = 20,
             batch_size: int = 64, lr: float = 1e-3, generator: torch.Generator | None = None
             ) -> list[float]:
    """Train the whole network on i.i.d. shuffled meta-training data with Adam; mean loss per epoch."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ShapeMismatchError(
            f"pretrain: {x.shape[0]} inputs and {y.shape[0]} targets; give a non-empty data set "
            "with one target per input"
        )
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(x.shape[0], generator=gen).split(batch_size):
            loss = criterion(net(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        history.append(total / x.shape[0])
    return history
