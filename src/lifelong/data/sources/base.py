"""`SourceData`: what every named data set returns — train/test tensors and class names."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SourceData:
    """Train/test tensors of one data set: float inputs (N, C, H, W) in [0, 1], int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def subsample(data: SourceData, n_train: int | None = None, n_test: int | None = None,
              seed: int = 0) -> SourceData:
    """A seeded random subset of at most `n_train` training and `n_test` test samples."""
    gen = torch.Generator().manual_seed(seed)

    def pick(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if n is None or n >= len(y):
            return x, y
        idx = torch.randperm(len(y), generator=gen)[:n].sort().values
        return x[idx], y[idx]

    tr_x, tr_y = pick(data.train_x, data.train_y, n_train)
    te_x, te_y = pick(data.test_x, data.test_y, n_test)
    return SourceData(data.name, tr_x, tr_y, te_x, te_y, data.class_names)
