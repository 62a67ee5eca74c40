"""Joint pre-training: the baseline OML and ANML are compared against (Javed & White 2019, §4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lifelong.core.checks import check_count, check_iterations, check_positive
from lifelong.core.errors import ShapeMismatchError
from lifelong.core.optimizers import build_optimizer


def pretrain(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, epochs: int = 20,
             batch_size: int = 64, lr: float = 1e-3, generator: torch.Generator | None = None,
             callback: Callable[[int, float], None] | None = None) -> list[float]:
    """Train the whole network on i.i.d. shuffled meta-training data with Adam; mean loss per epoch.

    `callback(epoch, loss)` is called after each epoch.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ShapeMismatchError(
            f"pretrain: {x.shape[0]} inputs and {y.shape[0]} targets; give a non-empty data set "
            "with one target per input"
        )
    epochs = check_iterations("pretrain: epochs", epochs)
    batch_size = check_count("pretrain: batch_size", batch_size)
    lr = check_positive("pretrain: lr", lr, allow_zero=False)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    optimizer = build_optimizer("adam", net.parameters(), lr)
    history = []
    for epoch in range(epochs):
        batches = torch.randperm(x.shape[0], generator=gen).split(batch_size)
        history.append(train_epoch(net, x, y, criterion, optimizer, batches))
        if callback is not None:
            callback(epoch, history[-1])
    return history


def train_epoch(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                optimizer: torch.optim.Optimizer, batches: tuple[torch.Tensor, ...]) -> float:
    """One optimiser step per batch of indices; the mean loss over the samples."""
    total = 0.0
    for idx in batches:
        loss = criterion(net(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * idx.numel()
    return total / sum(idx.numel() for idx in batches)
