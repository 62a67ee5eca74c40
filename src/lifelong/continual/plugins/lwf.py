"""Learning without Forgetting (Li & Hoiem 2017): distil the previous model's outputs on new data.

Before each experience the model's parameters and buffers are copied once. As in the paper's
Algorithm 1, that frozen copy's outputs on the experience's training data are recorded once, in
chunks, when the first batch needs them, and looked up by row; rows another plugin appended
(replay) run the frozen copy. Where an architecture strategy routes the model by each batch's task
labels, a row's output depends on its batch, so the frozen copy runs on every batch as built. The
current model's outputs for the old tasks' classes are pulled towards the recorded ones with a
temperature-softened distillation loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lifelong.continual.importance import call_model, detached_state, evaluating
from lifelong.continual.phases import fit
from lifelong.continual.plugin import Batch, Context, Plugin, TrainData
from lifelong.continual.task_identity import freeze_other_classes
from lifelong.core.checks import check_count, check_positive
from lifelong.core.errors import IncompatibleError, ShapeMismatchError
from lifelong.core.registries import STRATEGIES
from lifelong.models.layer_list import freeze_statistics

RECORD_ROWS = 512  # rows per forward of the frozen model when recording (a multi-head model's repeats count)
WARMUP_BATCH = 128


def check_distillation_shapes(new_logits: torch.Tensor, old_logits: torch.Tensor,
                              mask: torch.Tensor | None) -> None:
    """Raise unless the logits share one (B, C) or (H, B, C) shape and `mask` is (C,) or (H, C).

    (B, C) logits take an (H, C) mask of any H: the same logits are distilled once per mask row.
    """
    heads = new_logits.shape[0] if new_logits.ndim == 3 else None
    logits_ok = new_logits.ndim in (2, 3) and old_logits.shape == new_logits.shape
    mask_ok = mask is None or (mask.shape[-1:] == new_logits.shape[-1:]
                               and (mask.ndim == 1 or (mask.ndim == 2 and heads in (None, mask.shape[0]))))
    if not (logits_ok and mask_ok):
        raise ShapeMismatchError(
            f"distillation_loss: new logits {tuple(new_logits.shape)}, old logits {tuple(old_logits.shape)} "
            f"and mask {None if mask is None else tuple(mask.shape)} do not fit; give logits of one shape, "
            "(B, C) or (H, B, C) for H heads, and a mask (C,) or (H, C) over the same class dimension (last)")


def distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor,
                      mask: torch.Tensor | None = None, temperature: float = 2.0) -> torch.Tensor:
    """LwF's distillation loss (Li & Hoiem 2017, eq. 2): KL(softmax(old/T) ‖ softmax(new/T)).

    Logits are (B, C) or (H, B, C) for H heads; `mask` (C,) or (H, C) keeps each head's classes.
    The KL of each head is summed over heads and averaged over the B samples. It differs from the
    paper's cross-entropy by the old outputs' entropy, a constant, so the gradients are equal.
    """
    check_distillation_shapes(new_logits, old_logits, mask)
    if mask is not None:
        keep = mask.unsqueeze(-2)
        lowest = torch.finfo(new_logits.dtype).min
        new_logits, old_logits = new_logits.masked_fill(~keep, lowest), old_logits.masked_fill(~keep, lowest)
    log_q = (new_logits / temperature).log_softmax(-1)
    log_p = (old_logits / temperature).log_softmax(-1)
    terms = log_p.exp() * (log_p - log_q)
    if mask is not None:
        terms = torch.where(keep, terms, terms.new_zeros(()))
    return terms.sum() / new_logits.shape[-2]


def old_heads(ctx: Context) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(task labels, class masks) of what to distil before experience `ctx.index`.

    Task-incremental: one head per past task label, masked to its classes. Otherwise one head
    over every class seen in past experiences.
    """
    past = ctx.stream.experiences[: ctx.index]
    if ctx.setting == "task":
        tasks = torch.tensor(sorted({e.task for e in past}), device=ctx.device)
        return tasks, ctx.stream.class_mask().to(ctx.device)[tasks]
    mask = torch.zeros(1, ctx.stream.n_classes, dtype=torch.bool, device=ctx.device)
    mask[0, sorted({c for e in past for c in e.classes})] = True
    return None, mask


@STRATEGIES.register("lwf", aliases=("learning_without_forgetting",), family="regularisation",
                     stores="parameters", memory="O(params)", compute="Medium", forgetting="Moderate",
                     paper="Li & Hoiem 2017, Learning without Forgetting")
class LwF(Plugin):
    """LwF: loss + α · KD_T(old model ‖ model) on each batch, for the classes of past experiences.

    Defaults are the paper's: temperature T = 2, loss weight α (λ_o) = 1. Multi-head models
    (task-incremental) distil every old task's head on the new inputs, one batched forward over
    the heads; single-head models distil the old classes' logits (per old task in the task
    setting). The old model runs in eval mode without gradients; its outputs on the experience's
    data are recorded once, at the first batch, and looked up by row.

    `warmup_epochs` > 0 adds the paper's warm-up step before joint training on every experience
    after the first: only the new task's head (its own head, or a shared head's rows of the new
    classes) trains, with Adam at `warmup_lr`, while the backbone, its BatchNorm statistics and
    the old heads stay fixed. The paper trains it to convergence; 0 (no warm-up) is the default,
    as in Avalanche.
    """

    name = "lwf"
    runs_model_per_head = True  # a multi-head model distils each old head on the batch repeated

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0, warmup_epochs: int = 0,
                 warmup_lr: float = 1e-3) -> None:
        self.alpha = check_positive("lwf: alpha", alpha)
        self.temperature = check_positive("lwf: temperature", temperature, allow_zero=False)
        self.warmup_epochs = check_count("lwf: warmup_epochs", warmup_epochs, allow_zero=True)
        self.warmup_lr = check_positive("lwf: warmup_lr", warmup_lr, allow_zero=False)
        self.old: dict[str, torch.Tensor] | None = None
        self.tasks: torch.Tensor | None = None
        self.masks: torch.Tensor | None = None
        # (data, the frozen model's outputs (heads, N, C) on it) for this experience
        self.recorded: tuple[TrainData, torch.Tensor] | None = None

    def before_experience(self, ctx: Context) -> None:
        self.recorded = None
        if self.warmup_epochs:
            self.check_warm_up(ctx)
        if ctx.index == 0:
            self.old = self.tasks = self.masks = None
            return
        self.old = {k: v.clone() for k, v in detached_state(ctx.model).items()}
        self.tasks, self.masks = old_heads(ctx)
        if self.warmup_epochs:
            self.warm_up(ctx)

    @staticmethod
    def check_warm_up(ctx: Context) -> None:
        """Raise, from the first experience on, unless the warm-up can train the new head alone."""
        if not isinstance(getattr(ctx.model, "head", None), nn.Module) or ctx.routed:
            raise IncompatibleError(
                "lwf: the warm-up trains the new task's head alone, so it needs a model with a `head` "
                "module and no architecture strategy routing the model per task; set warmup_epochs=0")

    def warm_up(self, ctx: Context) -> None:
        """Train the new task's head alone on the experience (Li & Hoiem 2017, §3 warm-up step)."""
        pinned = freeze_statistics(ctx.model)
        try:
            fit(ctx, list(ctx.model.head.parameters()), ctx.forward, name=f"{self.name} warm-up",
                epochs=self.warmup_epochs, batch_size=WARMUP_BATCH, lr=self.warmup_lr,
                after_backward=lambda: freeze_other_classes(ctx.model, ctx.experience.classes))
        finally:
            for handle in pinned:
                handle.remove()

    def per_head(self, ctx: Context) -> bool:
        """Whether the old outputs come from each old task's head (multi-head, task-incremental)."""
        return self.tasks is not None and getattr(ctx.model, "takes_task", False)

    def heads(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(x, t, heads): the inputs once per old task head for multi-head models, else as given."""
        if self.per_head(ctx):
            heads, n = len(self.tasks), len(x)
            return x.repeat(heads, *(1,) * (x.ndim - 1)), self.tasks.repeat_interleave(n), heads
        return x, t, 1

    @torch.no_grad()
    def old_outputs(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The frozen model's outputs (heads, N, C) on `x`, in eval mode."""
        xs, ts, heads = self.heads(ctx, x, t)
        with evaluating(ctx.model):
            return call_model(ctx.model, self.old, xs, ts).view(heads, len(x), -1)

    def targets(self, ctx: Context, batch: Batch) -> torch.Tensor:
        """The frozen model's outputs (heads, B, C) on the batch: its rows of the experience looked
        up in the recorded outputs, appended rows run afresh."""
        if ctx.data is None or batch.index is None or ctx.routed:
            return self.old_outputs(ctx, batch.x, batch.t)
        if self.recorded is None or self.recorded[0] is not ctx.data:
            self.recorded = ctx.data, self.record(ctx, ctx.data)
        outputs = self.recorded[1]
        n_cur = len(batch) if batch.n_current < 0 else batch.n_current
        looked_up = outputs[:, batch.index.to(outputs.device)]
        if n_cur == len(batch):
            return looked_up
        return torch.cat([looked_up, self.old_outputs(ctx, batch.x[n_cur:], batch.t[n_cur:])], dim=1)

    def record(self, ctx: Context, data: TrainData) -> torch.Tensor:
        """The frozen model's outputs (heads, N, C) on every row of `data`, `RECORD_ROWS` inputs per
        forward (a multi-head model sees each row once per old head)."""
        rows = max(1, RECORD_ROWS // (len(self.tasks) if self.per_head(ctx) else 1))
        return torch.cat([self.old_outputs(ctx, data.x[s:s + rows], data.t[s:s + rows])
                          for s in range(0, len(data), rows)], dim=1)

    def loss_terms(self, ctx: Context, batch: Batch, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.old is None:
            return {}
        if self.per_head(ctx):
            x, t, heads = self.heads(ctx, batch.x, batch.t)
            outputs = ctx.forward(x, t).view(heads, len(batch), -1)
        old = self.targets(ctx, batch).view(outputs.shape)
        mask = self.masks[:, : outputs.shape[-1]]
        return {"distill": self.alpha * distillation_loss(outputs, old, mask, self.temperature)}

    def after_experience(self, ctx: Context) -> None:
        self.recorded = None  # the experience's data need not stay alive through evaluation

    def state_dict(self) -> dict[str, Any]:
        return {"old": self.old, "tasks": self.tasks, "masks": self.masks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.old, self.tasks, self.masks = state["old"], state["tasks"], state["masks"]
