"""PackNet (Mallya & Lazebnik 2018): train, prune the free weights by magnitude, retrain, freeze.

Every weight matrix / kernel of the backbone has an owner tensor (uint8, one entry per weight:
0 = free, k = the k-th task trained). Task k trains the free weights while the weights of
earlier tasks are used but frozen (their gradients are zeroed); then it keeps the largest
(1 − `prune`) fraction of the free weights of each layer, zeroes the rest, and retrains the
kept ones for `retrain_epochs` (Adam, `retrain_lr`) before they freeze. Biases, other backbone
parameters and BatchNorm statistics are trained with the first task and fixed afterwards, as in
the paper (its later tasks train with BatchNorm in eval mode). Evaluating task k uses exactly the
weights owned by tasks 1..k.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from lifelong.continual.importance import call_model
from lifelong.continual.phases import fit
from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.continual.task_identity import (
    TaskSlots,
    check_shared_head,
    freeze_other_classes,
    infer_by_entropy,
    slot_classes,
)
from lifelong.core.checks import check_count, check_flag, check_positive
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.models.adapters import per_slot
from lifelong.models.layer_list import freeze_statistics

MAX_TASKS = 255  # owners are stored as uint8


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The backbone's weight matrices and kernels (dim ≥ 2) by their name in `model`."""
    backbone = getattr(model, "backbone", model)
    prefix = "backbone." if backbone is not model else ""
    return {prefix + n: p for n, p in backbone.named_parameters() if p.dim() >= 2}


def assign_kept(weight: torch.Tensor, owner: torch.Tensor, owner_id: int, prune: float) -> torch.Tensor:
    """New owners: the largest (1 − prune) fraction of `weight`'s free entries (owner 0) go to `owner_id`."""
    free = (owner == 0).flatten()
    n_keep = round(int(free.sum()) * (1.0 - prune))
    magnitude = weight.detach().abs().flatten().masked_fill(~free, -1.0)
    kept = magnitude.topk(n_keep).indices
    out = owner.clone().flatten()
    out[kept] = owner_id
    return out.view_as(owner)


def check_prune(prune: float) -> float:
    """`prune` as a float in [0, 1), else a ConfigError saying what it means."""
    try:
        value = float(prune)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"packnet: prune is the fraction of free weights released per task "
                          f"and must be a number in [0, 1), got {prune!r}")
    return value


def task_mask(owner: torch.Tensor, slot: int) -> torch.Tensor:
    """The weights task `slot` (0-based) computes with: those owned by tasks 1..slot+1."""
    return (owner > 0) & (owner <= slot + 1)


@STRATEGIES.register("packnet", aliases=("pack_net",), family="architecture", stores="masks",
                     memory="O(masks)", compute="Medium", forgetting="None", capacity="bounded",
                     paper="Mallya & Lazebnik 2018, PackNet: Adding Multiple Tasks to a Single "
                           "Network by Iterative Pruning")
class PackNet(Plugin):
    """Iterative pruning: each task keeps (1 − prune) of the weights still free after the tasks before it.

    `prune` = 0.75 (the paper prunes 50% or 75% per task; 75% leaves room for more tasks).
    The paper retrains 10 epochs after pruning at a tenth of the training rate; the defaults here
    (`retrain_epochs=1`, `retrain_lr=1e-4`) fit the engine's one-epoch protocol. `infer_task=True`
    picks the task whose masked network is most confident (lowest entropy) for class-incremental
    evaluation. Frozen weights are held by zeroed gradients: exact with Adam and SGD; weight
    decay (e.g. AdamW) would still shrink them.
    """

    name = "packnet"
    restructures = True
    needs_task_labels = True
    settings = ("task",)

    def __init__(self, prune: float = 0.75, retrain_epochs: int = 1, retrain_lr: float = 1e-4,
                 batch_size: int = 128, infer_task: bool = False) -> None:
        self.prune = check_prune(prune)
        self.retrain_epochs = check_count("packnet: retrain_epochs", retrain_epochs) if retrain_epochs else 0
        self.retrain_lr = check_positive("packnet: retrain_lr", retrain_lr, allow_zero=False)
        self.batch_size = check_count("packnet: batch_size", batch_size)
        self.infer_task = check_flag("packnet: infer_task", infer_task)
        if self.infer_task:
            self.needs_task_labels, self.settings = False, ("task", "class")
        self.slots = TaskSlots()
        self.owners: dict[str, torch.Tensor] = {}
        self._frozen: dict[str, torch.Tensor] = {}
        self._statistics: list[RemovableHandle] = []

    def before_experience(self, ctx: Context) -> None:
        check_shared_head(ctx, self.name)
        weights = prunable(ctx.model)
        if not self.owners:
            self.owners = {n: torch.zeros_like(p, dtype=torch.uint8) for n, p in weights.items()}
        full = [n for n, o in self.owners.items() if not bool((o == 0).any())]
        if full:
            raise IncompatibleError(
                f"packnet has no free weights left in {full} for task {ctx.experience.task} (after "
                f"{len(self.slots)} tasks with prune={self.prune}); raise prune, widen the model, "
                "or train fewer tasks")
        if len(self.slots) >= MAX_TASKS:
            raise IncompatibleError(f"packnet stores owners as uint8 and holds at most {MAX_TASKS} tasks")
        self.slots.add(ctx.experience.task, self.name)
        if len(self.slots) > 1:
            backbone = getattr(ctx.model, "backbone", ctx.model)
            for p in backbone.parameters():
                p.requires_grad_(p.dim() >= 2)
            self._statistics = self._statistics or freeze_statistics(backbone)
        self._freeze_all_but(ctx, 0)

    def _freeze_all_but(self, ctx: Context, trainable: int) -> None:
        """Cache, on the model's device, which weights have an owner other than `trainable` (0: free)."""
        self._frozen = {n: self.owners[n].to(p.device) != trainable for n, p in prunable(ctx.model).items()}

    def _mask_grads(self, ctx: Context) -> None:
        """Zero the gradients of the weights `_freeze_all_but` froze."""
        for n, p in prunable(ctx.model).items():
            if p.grad is not None:
                p.grad.masked_fill_(self._frozen[n], 0)
        freeze_other_classes(ctx.model, ctx.experience.classes)

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        self._mask_grads(ctx)

    def after_experience(self, ctx: Context) -> None:
        owner_id = len(self.slots)
        weights = prunable(ctx.model)
        with torch.no_grad():
            for n, p in weights.items():
                self.owners[n] = assign_kept(p, self.owners[n].to(p.device), owner_id, self.prune).cpu()
                p.masked_fill_(self.owners[n].to(p.device) == 0, 0.0)
        if self.retrain_epochs:
            self._freeze_all_but(ctx, owner_id)
            params = [p for p in ctx.model.parameters() if p.requires_grad]
            fit(ctx, params, ctx.forward, name=self.name, epochs=self.retrain_epochs,
                batch_size=self.batch_size, lr=self.retrain_lr, after_backward=lambda: self._mask_grads(ctx))

    def _masked_logits(self, ctx: Context, x: torch.Tensor, t: torch.Tensor, slot: int) -> torch.Tensor:
        weights = prunable(ctx.model)
        state = {n: p * task_mask(self.owners[n].to(p.device), slot) for n, p in weights.items()}
        return call_model(ctx.model, state, x, t)

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if not self.slots.labels:
            return None
        if self.infer_task:
            logits = torch.stack([self._masked_logits(ctx, x, t, u) for u in range(len(self.slots))])
            return infer_by_entropy(logits, slot_classes(ctx, self.slots.labels))
        logits = per_slot(self.slots.of(t), lambda u, xs, ts: self._masked_logits(ctx, xs, ts, u), (x, t))
        return ctx.mask(logits, t)

    def masks(self) -> dict[str, list[torch.Tensor]]:
        """Each task's binary mask (the weights it owns) per weight tensor."""
        return {n: [o == k + 1 for k in range(len(self.slots))] for n, o in self.owners.items()}

    def parameter_report(self) -> dict[str, Any]:
        """Fixed capacity: weights owned per task and still free (no parameters are added)."""
        owned = [sum(int((o == k + 1).sum()) for o in self.owners.values()) for k in range(len(self.slots))]
        return {"parameters": sum(o.numel() for o in self.owners.values()), "added": [0] * len(owned),
                "owned": owned, "free": sum(int((o == 0).sum()) for o in self.owners.values())}

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.slots.labels), "owners": dict(self.owners)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slots = TaskSlots(state["tasks"])
        self.owners = dict(state["owners"])
