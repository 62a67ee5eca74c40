"""The hyper-parameters of a multi-task run, as plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lifelong.core.checks import check_count, check_numbers, check_positive
from lifelong.core.errors import ConfigError


@dataclass
class TrainConfig:
    """Hyper-parameters of a multi-task run (plain values; recorded in results and checkpoints).

    `epochs` ≥ 1; `batch_size` may be a per-task mapping (per-task data); `micro_batch` caps the
    samples per forward and backward pass (gradient accumulation; the update stays the whole
    batch's, so BatchNorm models and the aggregators that need one batch's graph refuse it);
    `steps_per_epoch` may exceed one pass over shared inputs (fresh permutations follow);
    `sampler` (+ `sampler_args`) draws
    `tasks_per_step` tasks per step for per-task data (None: every task every step);
    `conflict_every` > 0 records gradient-conflict statistics every that many steps.
    """

    epochs: int = 10
    batch_size: int | dict[str, int] = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    sampler: str | None = None
    sampler_args: dict[str, Any] = field(default_factory=dict)
    tasks_per_step: int = 1
    micro_batch: int | None = None
    steps_per_epoch: int | None = None
    conflict_every: int = 0
    conflict_threshold: float = -0.1
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        check_count("train.epochs", self.epochs)
        sizes = self.batch_size.values() if isinstance(self.batch_size, Mapping) else [self.batch_size]
        for size in sizes:
            check_count("train.batch_size (each task's, for a mapping)", size)
        check_positive("train.lr", self.lr)
        check_count("train.tasks_per_step", self.tasks_per_step)
        check_count("train.eval_batch_size", self.eval_batch_size)
        check_count("train.micro_batch", self.micro_batch, allow_none=True)
        check_count("train.steps_per_epoch", self.steps_per_epoch, allow_none=True)
        check_count("train.conflict_every", self.conflict_every, allow_zero=True)
        (threshold,) = check_numbers("train", conflict_threshold=self.conflict_threshold)
        if not -1 <= threshold <= 1:
            raise ConfigError(f"train.conflict_threshold is a cosine in [-1, 1], got {threshold}")
        if self.sampler is None and self.tasks_per_step != 1:
            raise ConfigError(f"train.tasks_per_step={self.tasks_per_step} is the number of tasks a sampler "
                              "draws per step; set train.sampler (e.g. 'temperature') or drop it")
        if not isinstance(self.sampler_args, Mapping):
            raise ConfigError(f"train.sampler_args must be a mapping, got {self.sampler_args!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
