"""Gradient Episodic Memory (Lopez-Paz & Ranzato 2017): updates may not raise a past memory's loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lifelong.continual.buffers import BalancedBuffer
from lifelong.continual.importance import flat_grads, sample_rows
from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.core.checks import check_count, check_positive
from lifelong.core.registries import STRATEGIES
from lifelong.grad import gem_project, jacobian, write_grad


def trainable(ctx: Context) -> list[Tensor]:
    """The parameters the optimiser updates."""
    return [p for p in ctx.model.parameters() if p.requires_grad]


def memory_losses(ctx: Context, rows: dict[str, Tensor]) -> Tensor:
    """Per-sample cross-entropy of the model on memory rows (task-incremental logits masked)."""
    outputs = ctx.forward(rows["x"], rows["t"])
    return F.cross_entropy(ctx.mask(outputs, rows["t"]), rows["y"], reduction="none")


class EpisodicMemory(Plugin):
    """Keeps `patterns_per_experience` random training samples of every finished experience."""

    runs_model = True  # the memory's gradients

    def __init__(self, patterns_per_experience: int) -> None:
        self.per_experience = check_count(f"{self.name}: patterns_per_experience", patterns_per_experience)
        self.memory: BalancedBuffer | None = None

    def before_experience(self, ctx: Context) -> None:
        if self.memory is None:  # room for every experience of the stream, no more
            self.memory = BalancedBuffer(self.per_experience * len(ctx.stream))
        self.memory.to(ctx.device)

    def after_experience(self, ctx: Context) -> None:
        exp = ctx.experience
        x, y, t = sample_rows(self.per_experience, ctx.generator, exp.train_x, exp.train_y, exp.train_t())
        self.memory.add({"x": x, "y": y, "t": t}, torch.full((len(y),), ctx.index))

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict() if self.memory is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory = None
        if state["memory"] is not None:
            self.memory = BalancedBuffer(int(state["memory"]["capacity"]))
            self.memory.load_state_dict(state["memory"])


@STRATEGIES.register("gem", family="replay", stores="buffer", memory="O(buffer)", compute="High",
                     forgetting="Low",
                     paper="Lopez-Paz & Ranzato 2017, Gradient Episodic Memory for Continual Learning")
class GEM(EpisodicMemory):
    """GEM (Lopez-Paz & Ranzato 2017): project the gradient so no past experience's loss rises.

    After backward, the memory of each past experience gives one gradient g_k of its mean loss
    (all from one batched backward, `lifelong.grad.jacobian`); when some ⟨g, g_k⟩ < 0 the gradient
    is replaced by the solution of GEM's dual QP (`lifelong.grad.gem_project`) with `margin`
    γ = 0.5, so ⟨g̃, g_k⟩ ≥ 0 for every k. Defaults from the paper: 256 patterns per experience.
    """

    name = "gem"

    def __init__(self, patterns_per_experience: int = 256, margin: float = 0.5) -> None:
        super().__init__(patterns_per_experience)
        self.margin = check_positive(f"{self.name}: margin", margin)

    def memory_gradients(self, ctx: Context, params: Sequence[Tensor]) -> Tensor:
        """G (k × p): the gradient of each past experience's mean memory loss."""
        rows = self.memory.view()
        groups, index = torch.unique(rows["group"], return_inverse=True)
        index = index.to(ctx.device)
        ce = memory_losses(ctx, rows)
        per_task = ce.new_zeros(len(groups)).index_add(0, index, ce)
        per_task = per_task / torch.bincount(index, minlength=len(groups)).to(ce.dtype)
        return jacobian(per_task, params)

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        if self.memory is None or not len(self.memory):
            return
        params = trainable(ctx)
        g = flat_grads(params)
        write_grad(params, gem_project(g, self.memory_gradients(ctx, params), self.margin) - g)
