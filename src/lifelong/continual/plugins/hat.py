"""Hard Attention to the Task (Serrà et al. 2018): learned per-task unit gates that protect old units.

Every weighted layer l of the backbone gets gates a^t_l = σ(s·e^t_l) from a task embedding e^t.
During training the slope s is annealed within each epoch from 1/s_max to s_max (eq. 3); at
test s = s_max. After task t the cumulative mask a^{≤t} = max(a^t, a^{<t}) records the units in
use. Training a later task multiplies the gradient of weight w_ij of layer l by
1 − min(a^{<t}_{l,i}, a^{<t}_{l−1,j}) (inputs count as used; bias: 1 − a^{<t}_{l,i}), so weights
between units used by earlier tasks do not move; the embedding gradient is compensated for the
annealing (eq. 5: s_max[cosh(s e)+1] / s[cosh(e)+1]), embeddings are clamped to ±6, and the
attention regulariser c·Σ a^t(1 − a^{<t}) / Σ(1 − a^{<t}) (eq. 6) keeps the new task's masks sparse.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lifelong.continual.plugin import Batch, Context, Plugin, TrainData
from lifelong.continual.task_identity import (
    TaskSlots,
    check_shared_head,
    freeze_other_classes,
    route_or_infer,
)
from lifelong.core.checks import check_flag, check_positive
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.models.gated import GatedNet
from lifelong.models.layer_list import layer_list
from lifelong.models.routed import Routed, classifier_backbone, install

COSH_CLAMP = 50.0  # keeps cosh(s·e) finite, as the authors' code does


def annealed_slope(batch: int, n_batches: int, s_max: float) -> float:
    """s = 1/s_max + (s_max − 1/s_max)(b − 1)/(B − 1) for batch b = batch + 1 of B in the epoch (eq. 3)."""
    return 1 / s_max + (s_max - 1 / s_max) * batch / max(n_batches - 1, 1)


def attention_regulariser(gates: list[torch.Tensor], cumulative: list[torch.Tensor] | None,
                          c: float) -> torch.Tensor:
    """c · Σ_l Σ_i a^t_{l,i}(1 − a^{<t}_{l,i}) / Σ_l Σ_i (1 − a^{<t}_{l,i}) (eq. 6; a^{<t} = 0 at first)."""
    free = [torch.ones_like(a) for a in gates] if cumulative is None else [1 - m for m in cumulative]
    used = sum((a * f).sum() for a, f in zip(gates, free, strict=True))
    return c * used / sum(f.sum() for f in free).clamp_min(1.0)


def compensation(e: torch.Tensor, s: float, s_max: float) -> torch.Tensor:
    """The factor s_max[cosh(s e) + 1] / (s[cosh(e) + 1]) applied to the embedding gradient (eq. 5)."""
    return s_max / s * (torch.cosh((s * e).clamp(-COSH_CLAMP, COSH_CLAMP)) + 1) / (torch.cosh(e) + 1)


def weight_block(layer: nn.Module, out_mask: torch.Tensor, in_mask: torch.Tensor) -> torch.Tensor:
    """1 − min(a_out[i], a_in[j]) shaped like `layer.weight` (a_in expanded over flattened positions)."""
    n_in = layer.weight.shape[1]
    if n_in % in_mask.numel():
        raise IncompatibleError(f"hat: a layer with {n_in} inputs follows {in_mask.numel()} gated units")
    a_in = in_mask.repeat_interleave(n_in // in_mask.numel())
    block = 1 - torch.minimum(out_mask[:, None], a_in[None, :])
    return block.view(*block.shape, *([1] * (layer.weight.dim() - 2)))


@STRATEGIES.register("hat", aliases=("hard_attention", "hard-attention-to-the-task"),
                     family="architecture", stores="masks", memory="O(masks)", compute="Medium",
                     forgetting="Very Low", capacity="bounded",
                     paper="Serrà et al. 2018, Overcoming Catastrophic Forgetting with Hard "
                           "Attention to the Task")
class HAT(Plugin):
    """Task-embedding gates on every unit of the backbone, with the paper's defaults s_max = 400, c = 0.75.

    Gradients of units used by earlier tasks are scaled by 1 − a^{<t}: with binary gates (the
    usual case at s_max) they are exactly zero and those weights stay bit-identical under Adam or
    SGD (weight decay would still shrink them). A gate strictly between 0 and 1 protects its
    weights only under SGD, as in the paper: Adam divides each step by the gradient's running
    scale and so undoes the scaling (use `optimizer: sgd` for that protection). `infer_task=True`
    picks the task whose gated
    network is most confident (lowest entropy) for class-incremental evaluation.
    """

    name = "hat"
    restructures = routes_model = True
    needs_task_labels = True
    settings = ("task",)

    def __init__(self, s_max: float = 400.0, c: float = 0.75, clamp: float = 6.0,
                 infer_task: bool = False) -> None:
        self.s_max = check_positive("hat: s_max", s_max, allow_zero=False)
        self.c = check_positive("hat: c", c)
        self.clamp = check_positive("hat: clamp", clamp, allow_zero=False)
        self.infer_task = check_flag("hat: infer_task", infer_task)
        if self.infer_task:
            self.needs_task_labels, self.settings = False, ("task", "class")
        self.slots = TaskSlots()
        self.n_tasks = 0
        self.input_shape: list[int] = []
        self.cumulative: list[torch.Tensor] | None = None
        self.router: Routed | None = None
        self._blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._epoch, self._epoch_step, self._n_train, self._rows = -1, 0, 0, 1

    @property
    def net(self) -> GatedNet:
        return self.router.net

    def _build(self, model: nn.Module, generator: torch.Generator) -> None:
        layers = layer_list(classifier_backbone(model), self.input_shape)
        self.router = install(model, GatedNet(layers, self.n_tasks, generator))

    def before_experience(self, ctx: Context) -> None:
        check_shared_head(ctx, self.name)
        if self.router is None:
            self.n_tasks, self.input_shape = ctx.stream.n_tasks, list(ctx.stream.input_shape)
            self._build(ctx.model, ctx.generator)
        self.slots.add(ctx.experience.task, self.name)
        self._blocks = []
        if self.cumulative is not None:
            masks = [m.to(ctx.device) for m in self.cumulative]
            inputs = [torch.ones(self.net.weighted_layers()[0].weight.shape[1], device=ctx.device), *masks[:-1]]
            for layer, a_out, a_in in zip(self.net.weighted_layers(), masks, inputs, strict=True):
                self._blocks.append((weight_block(layer, a_out, a_in), 1 - a_out))
        self._epoch = -1

    def train_data(self, ctx: Context, data: TrainData) -> TrainData:
        self._n_train = len(data)
        return data

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        if ctx.epoch != self._epoch:
            # rows of the experience only: a replay strategy listed before may have appended its own
            self._epoch, self._epoch_step = ctx.epoch, ctx.step
            self._rows = max(int(batch.y[batch.current].shape[0]), 1)
        n_batches = math.ceil(self._n_train / self._rows)
        self.net.s = annealed_slope(ctx.step - self._epoch_step, n_batches, self.s_max)
        self.router.route(self.slots.of(batch.t))
        return batch

    def loss_terms(self, ctx: Context, batch: Batch, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.c:
            return {}
        gates = self.net.gates(len(self.slots) - 1, self.net.s)
        cumulative = None if self.cumulative is None else [m.to(ctx.device) for m in self.cumulative]
        return {"reg": attention_regulariser(gates, cumulative, self.c)}

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        for layer, (w_block, b_block) in zip(self.net.weighted_layers(), self._blocks, strict=False):  # none at first
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(w_block)
            if layer.bias is not None and layer.bias.grad is not None:
                layer.bias.grad.mul_(b_block)
        for e in self.net.embeddings:
            if e.grad is not None:
                e.grad.mul_(compensation(e.detach(), self.net.s, self.s_max))
        freeze_other_classes(ctx.model, ctx.experience.classes)

    def after_step(self, ctx: Context, batch: Batch) -> None:
        with torch.no_grad():
            for e in self.net.embeddings:
                e.clamp_(-self.clamp, self.clamp)

    def after_experience(self, ctx: Context) -> None:
        self.net.s = self.s_max
        with torch.no_grad():
            gates = [a.cpu() for a in self.net.gates(len(self.slots) - 1, self.s_max)]
        self.cumulative = gates if self.cumulative is None else [
            torch.maximum(a, m) for a, m in zip(gates, self.cumulative, strict=True)]

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if self.router is not None:
            self.net.s = self.s_max
        return route_or_infer(ctx, self.router, self.slots, self.infer_task, x, t)

    def parameter_report(self) -> dict[str, Any]:
        """Parameters in total (embeddings preallocated for the stream's tasks) and units in use."""
        if self.router is None:
            return {"parameters": 0, "added": []}
        used = [] if self.cumulative is None else [int((m > 0.5).sum()) for m in self.cumulative]
        return {"parameters": sum(p.numel() for p in self.net.parameters()),
                "added": [0] * len(self.slots), "units_used": used}

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.slots.labels), "n_tasks": self.n_tasks,
                "input_shape": list(self.input_shape), "cumulative": self.cumulative}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slots = TaskSlots(state["tasks"])
        self.n_tasks, self.input_shape = int(state["n_tasks"]), list(state["input_shape"])
        self.cumulative = state["cumulative"]

    def restore(self, model: nn.Module) -> None:
        if self.slots.labels:
            self._build(model, torch.Generator().manual_seed(0))
            self.net.s = self.s_max
