"""The hyper-parameters of a multi-task run, as plain values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Hyper-parameters of a multi-task run (plain values; recorded in results and checkpoints).

    `batch_size` may be a per-task mapping (per-task data); `micro_batch` caps the samples per
    backward pass (gradient accumulation); `sampler` (+ `sampler_args`) draws
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
