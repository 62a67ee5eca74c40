"""The plugin contract of the continual engine: `Batch`, `Context`, and no-op hooks to override."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from lifelong.data.stream import Experience, Stream


@dataclass(frozen=True)
class Batch:
    """Inputs, labels and task labels of one training batch, with optional per-sample weights.

    `extra` carries named tensors a plugin attaches to the samples it appended (e.g. DER's
    stored logits); `n_current` is how many leading rows come from the current experience, and
    `index` which rows of the experience's training data (`Context.data`) they are.
    """

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    weight: torch.Tensor | None = None
    n_current: int = -1
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def append(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
               weight: float | torch.Tensor = 1.0, **extra: torch.Tensor) -> Batch:
        """A new batch with rows appended (weights default to 1; `extra` names new tensors).

        Weights stay None (the plain mean) while every row's weight is 1.
        """
        n_cur = len(self) if self.n_current < 0 else self.n_current
        weights = None
        if self.weight is not None or not (isinstance(weight, float | int) and weight == 1):
            w_old = self.weight if self.weight is not None else torch.ones(len(self), device=self.x.device)
            w_new = torch.as_tensor(weight, dtype=w_old.dtype, device=w_old.device).expand(y.shape[0])
            weights = torch.cat([w_old, w_new])
        return replace(
            self, x=torch.cat([self.x, x]), y=torch.cat([self.y, y]), t=torch.cat([self.t, t]),
            weight=weights, n_current=n_cur, extra={**self.extra, **extra},
        )

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Σ w·v / Σ w of a per-row value: the plain mean when unweighted, 0 when every weight is
        0, and the same whichever order plugins appended their rows in."""
        if self.weight is None:
            return values.mean()
        return (self.weight * values).sum() / self.weight.sum().clamp_min(torch.finfo(values.dtype).tiny)

    @property
    def current(self) -> slice:
        """Rows that come from the current experience."""
        return slice(0, len(self) if self.n_current < 0 else self.n_current)


@dataclass(frozen=True)
class TrainData:
    """The tensors one experience trains on (a plugin may replace them, e.g. cumulative)."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Context:
    """The whole surface a plugin may see: model, data, counters, generator and device.

    `stream` is the full stream; only the `joint` and `cumulative` baselines look past
    `experience`. `forward(x, t)` runs the model as the engine does (task-conditioned models get
    the task labels); `mask(logits, t)` applies the task-incremental class mask. During training
    `data` is what the experience trains on (after every plugin's `train_data`). `routed` says an
    architecture strategy routes the model by the task labels of each batch it builds, so the
    model's output on a row depends on the batch it sits in. `epochs` and `batch_size` are the
    engine's: each experience trains for `epochs` passes in batches of `batch_size` rows.
    """

    model: nn.Module
    stream: Stream
    experience: Experience
    index: int
    epoch: int
    step: int
    generator: torch.Generator
    device: torch.device
    setting: str
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    mask: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    data: TrainData | None = None
    routed: bool = False
    epochs: int = 1
    batch_size: int = 128

    def advance(self, **changes: Any) -> Context:
        """A copy with some counters changed."""
        return replace(self, **changes)


class Plugin:
    """Base of every strategy: all hooks are no-ops; override only what the method needs.

    Class attributes declare what the engine checks before training and how it orders hooks:
    `needs_task_labels` (task identity at test time), `settings` (scenarios it supports);
    `restructures` (an architecture strategy: it rebuilds, grows, masks or routes the model, so
    its `before_experience` and `after_experience` run before the other strategies' and its
    `train_data`, `extend_batch` and `after_backward` after theirs, whatever the order of the spec),
    `routes_model` (only the engine's own forward of the batch is routed by task), `runs_model`
    (it runs the model on inputs of its own: a Fisher, memory gradients, difficulty scores;
    `runs_model_per_head`: only on a multi-head model, once per head),
    `grows_parameters` (it adds parameter tensors for each task), `anchors_parameters` (it
    keeps state laid out over the parameters, e.g. a penalty's anchor) and `needs_fixed_width` (it
    keeps outputs or a classifier laid out over every class, so the output layer must not grow).
    """

    name: ClassVar[str] = "plugin"
    needs_task_labels: ClassVar[bool] = False
    settings: ClassVar[tuple[str, ...]] = ("task", "domain", "class")
    restructures: ClassVar[bool] = False
    routes_model: ClassVar[bool] = False
    runs_model: ClassVar[bool] = False
    runs_model_per_head: ClassVar[bool] = False
    grows_parameters: ClassVar[bool] = False
    anchors_parameters: ClassVar[bool] = False
    needs_fixed_width: ClassVar[bool] = False

    def before_experience(self, ctx: Context) -> None:
        """Called before training on `ctx.experience` (after the model has adapted to it)."""

    def problems(self, stream: Stream, epochs: int, batch_size: int) -> list[str]:
        """Why this strategy cannot train `stream` for `epochs` in batches of `batch_size`, found before
        training (default: nothing)."""
        return []

    def train_data(self, ctx: Context, data: TrainData) -> TrainData:
        """The data to train on for this experience (default: unchanged)."""
        return data

    def epoch_order(self, ctx: Context, data: TrainData) -> torch.Tensor | None:
        """Indices of `data` in the order to visit this epoch, or None for a random permutation."""
        return None

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        """The batch to train on (e.g. with replayed samples appended)."""
        return batch

    def loss_terms(self, ctx: Context, batch: Batch, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms added to the classification loss."""
        return {}

    def add_grads(self, ctx: Context, batch: Batch) -> None:
        """Add to `.grad` the gradients of loss terms this plugin returned as constants (a closed-form
        gradient is cheaper than autograd's); runs for every plugin before any `after_backward`."""

    def observe_grads(self, ctx: Context, batch: Batch) -> None:
        """Read (never edit) `.grad` as every loss term made it: after all `add_grads`, before any
        `after_backward` edits it (SI's path integral needs the unprojected gradient)."""

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        """May edit `.grad` of the model's parameters (projection, masking)."""

    def after_step(self, ctx: Context, batch: Batch) -> None:
        """Called after the optimiser step."""

    def after_experience(self, ctx: Context) -> None:
        """Called after training on `ctx.experience`, before evaluation."""

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        """Class scores for evaluation, or None to use the model's masked logits."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only, so checkpoints load with `weights_only=True`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def parameter_report(self) -> dict[str, Any] | None:
        """How this strategy grew the model (`parameters`, `added` per task, ...), or None if it does not."""
        return None

    def restore(self, model: nn.Module) -> None:
        """On resume, after `load_state_dict` and before the model's weights load: rebuild the
        structure this plugin added to `model` (columns, gates, adapters) so those weights fit."""
