"""Experience replay (Chaudhry et al. 2019): each training batch is extended with a memory batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from lifelong.continual.buffers import BalancedBuffer, ReservoirBuffer, TensorStore
from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.core.checks import check_count, check_positive
from lifelong.core.errors import ConfigError
from lifelong.core.registries import STRATEGIES


@dataclass(frozen=True)
class Policy:
    """How a replay memory is kept: its buffer, how rows enter it, and whether after every step."""

    buffer: Callable[[int], TensorStore]
    insert: Callable[[Any, Context, dict[str, Tensor]], None]
    online: bool


POLICIES: dict[str, Policy] = {
    "reservoir": Policy(ReservoirBuffer, lambda b, ctx, rows: b.add(rows, ctx.generator), True),
    # one share per class of each experience: a class met again in a later domain keeps its old rows
    "class_balanced": Policy(BalancedBuffer,
                             lambda b, ctx, rows: b.add(rows, ctx.index * ctx.stream.n_classes + rows["y"]),
                             False),
    "task_balanced": Policy(BalancedBuffer,
                            lambda b, ctx, rows: b.add(rows, torch.full_like(rows["y"], ctx.index)),
                            False),
}


def current_rows(batch: Batch) -> dict[str, Tensor]:
    """Inputs, labels and task labels of the rows that come from the current experience."""
    cur = batch.current
    return {"x": batch.x[cur], "y": batch.y[cur], "t": batch.t[cur]}


def replay_rows(batch: Batch, size: int | None) -> int:
    """Rows to replay beside `batch`: `size`, or by default as many as its current rows."""
    return size or int(batch.y[batch.current].shape[0])


def append_term(batch: Batch, x: Tensor, y: Tensor, t: Tensor, weight: float,
                current: float = 1.0, **extra: Tensor) -> Batch:
    """`batch` with rows appended so that its weighted mean (`Batch.mean`, the engine's
    cross-entropy) becomes `current`·CE(old rows) + `weight`·CE(new rows), each part its own
    weighted mean, when current + weight = 1 (proportional to it otherwise)."""
    old = batch.weight if batch.weight is not None else torch.ones(len(batch), device=batch.x.device)
    new = (weight * old.sum() / y.shape[0]).expand(y.shape[0])
    return replace(batch.append(x, y, t, **extra), weight=torch.cat([current * old, new]))


@STRATEGIES.register("replay", aliases=("er", "experience_replay"), family="replay",
                     stores="buffer", memory="O(buffer)", compute="Low", forgetting="Low",
                     paper="Chaudhry et al. 2019, On Tiny Episodic Memories in Continual Learning")
class Replay(Plugin):
    """Experience replay (Chaudhry et al. 2019): train on each batch joined with a memory batch.

    Replayed rows join the current ones in one cross-entropy mean (the paper's update on
    B ∪ B_M), each weighted `weight` (default 1). The replay batch has `replay_batch_size` rows
    (default: as many as the current batch, as in the paper). `policy`: `reservoir` (default;
    reservoir sampling by Li's algorithm L, updated after every step, so every sample seen is kept
    with equal probability), `class_balanced` or `task_balanced` (equal space per class of each
    experience / per experience, a ring per group as in the paper, filled at the end of each
    experience; in a domain-incremental stream every experience keeps its share of each class).
    `buffer_size` default 500.
    """

    name = "replay"

    def __init__(self, buffer_size: int = 500, replay_batch_size: int | None = None,
                 weight: float = 1.0, policy: str = "reservoir") -> None:
        capacity = check_count(f"{self.name}: buffer_size", buffer_size)
        self.replay_batch_size = check_count(f"{self.name}: replay_batch_size", replay_batch_size, allow_none=True)
        self.weight = check_positive(f"{self.name}: weight", weight)
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ConfigError(f"{self.name}: unknown policy {policy!r}; "
                              f"choose one of {sorted(POLICIES)}")
        self.policy = POLICIES[policy]
        self.buffer = self.policy.buffer(capacity)

    def before_experience(self, ctx: Context) -> None:
        self.buffer.to(ctx.device)

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        if not len(self.buffer):
            return batch
        s = self.buffer.sample(replay_rows(batch, self.replay_batch_size), ctx.generator)
        return batch.append(s["x"], s["y"], s["t"], weight=self.weight)

    def after_step(self, ctx: Context, batch: Batch) -> None:
        if self.policy.online:
            self.policy.insert(self.buffer, ctx, current_rows(batch))

    def after_experience(self, ctx: Context) -> None:
        if not self.policy.online:
            exp = ctx.experience  # offered in random order, so each ring keeps a random subset
            order = torch.randperm(exp.n_train, generator=ctx.generator).to(exp.train_y.device)
            rows = {"x": exp.train_x[order], "y": exp.train_y[order], "t": exp.train_t()[order]}
            self.policy.insert(self.buffer, ctx, rows)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
