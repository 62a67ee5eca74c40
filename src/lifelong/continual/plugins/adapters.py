"""Adapters on a frozen backbone, one set per task: bottleneck adapters (Houlsby et al. 2019) and LoRA (Hu et al. 2021).

The plugin rebuilds the backbone's layer list into an `AdaptedNet` installed as the backbone;
every task adds its own adapter on each linear layer, trains it with the model's head, and
freezes it (`requires_grad=False`, out of the optimiser). The backbone is frozen too, BatchNorm
statistics included — after the first task when `train_backbone_first` (a backbone that is not
pre-trained learns its features there), from the start otherwise. The task label picks the adapter set; with
`infer_task=True` the most confident set (lowest entropy) is picked instead.

`lora(backend="peft")` puts LoRA on any nn.Module through Hugging Face `peft`, an optional
extra loaded lazily (`pip install lifelong[adapters]`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.continual.plugins.peft_lora import PeftLoRA
from lifelong.continual.task_identity import (
    TaskSlots,
    check_shared_head,
    freeze_other_classes,
    route_or_infer,
)
from lifelong.core.checks import check_count, check_flag, check_positive
from lifelong.core.errors import ConfigError
from lifelong.core.registries import STRATEGIES
from lifelong.models.adapters import AdaptedNet, AdapterFactory, Bottleneck, LoRA
from lifelong.models.layer_list import freeze_statistics, layer_list
from lifelong.models.routed import Routed, classifier_backbone, install


class AdapterStrategy(Plugin):
    """One adapter set per task on the linear layers of a frozen backbone, chosen by task slot."""

    needs_task_labels = True
    settings = ("task",)
    restructures = routes_model = grows_parameters = True

    def __init__(self, name: str, factory: AdapterFactory, train_backbone_first: bool = True,
                 infer_task: bool = False) -> None:
        self.name = name
        self.factory = factory
        self.train_backbone_first = check_flag(f"{name}: train_backbone_first", train_backbone_first)
        self.infer_task = check_flag(f"{name}: infer_task", infer_task)
        if self.infer_task:
            self.needs_task_labels, self.settings = False, ("task", "class")
        self.slots = TaskSlots()
        self.input_shape: list[int] = []
        self.router: Routed | None = None
        self._statistics: list[RemovableHandle] = []

    @property
    def net(self) -> AdaptedNet:
        return self.router.net

    def _build(self, model: nn.Module) -> None:
        layers = layer_list(classifier_backbone(model), self.input_shape)
        self.router = install(model, AdaptedNet(layers, self.factory))

    def before_experience(self, ctx: Context) -> None:
        check_shared_head(ctx, self.name)
        if self.router is None:
            self.input_shape = list(ctx.stream.input_shape)
            self._build(ctx.model)
        slot = self.slots.add(ctx.experience.task, self.name)
        trains_backbone = self.train_backbone_first and slot == 0
        self.net.layers.requires_grad_(trains_backbone)
        if not trains_backbone:
            self._statistics = self._statistics or freeze_statistics(self.net.layers)
        self.net.tasks.requires_grad_(False)
        self.net.add_task(ctx.generator)

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        self.router.route(self.slots.of(batch.t))
        return batch

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        freeze_other_classes(ctx.model, ctx.experience.classes)

    def after_experience(self, ctx: Context) -> None:
        self.net.requires_grad_(False)

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        return route_or_infer(ctx, self.router, self.slots, self.infer_task, x, t)

    def parameter_report(self) -> dict[str, Any]:
        """Parameters in total (backbone + adapters) and added per task (its adapter set)."""
        if self.router is None:
            return {"parameters": 0, "added": []}
        added = [sum(p.numel() for p in adapters.parameters()) for adapters in self.net.tasks]
        return {"parameters": sum(p.numel() for p in self.net.parameters()), "added": added}

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.slots.labels), "input_shape": list(self.input_shape)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slots = TaskSlots(state["tasks"])
        self.input_shape = list(state["input_shape"])

    def restore(self, model: nn.Module) -> None:
        if not self.slots.labels:
            return
        self._build(model)
        generator = torch.Generator().manual_seed(0)  # placeholder values: the checkpoint overwrites them
        for _ in self.slots.labels:
            self.net.add_task(generator)
        self.net.requires_grad_(False)


@STRATEGIES.register("adapters", aliases=("bottleneck_adapters", "houlsby", "adapter"),
                     family="architecture", stores="adapters", memory="O(T * adapter)",
                     compute="Low", forgetting="None",
                     paper="Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP")
def adapters(bottleneck: int = 64, train_backbone_first: bool = True,
             infer_task: bool = False) -> AdapterStrategy:
    """Bottleneck adapters y + U GELU(D y) after every linear layer, `bottleneck` units (the paper
    sweeps 8, 64, 256); each task adds 2·d·m + d + m parameters per adapted layer of width d."""
    size = check_count("adapters: bottleneck", bottleneck)
    return AdapterStrategy("adapters", partial(Bottleneck, size=size), train_backbone_first, infer_task)


@STRATEGIES.register("lora", aliases=("lora_adapters", "low_rank_adapters"), family="architecture",
                     stores="adapters", memory="O(T * adapter)", compute="Low", forgetting="None",
                     paper="Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models")
def lora(rank: int = 8, alpha: float = 8.0, backend: str = "own",
         target_modules: list[str] | None = None, train_backbone_first: bool | None = None,
         infer_task: bool = False) -> Plugin:
    """LoRA per task on every linear layer: y + (alpha/rank) B A x with rank r = 8 and α = r (the
    paper sets α to the first r tried); each task adds r·(d_in + d_out) per adapted layer.

    `backend="own"` (default) needs nothing beyond torch; `backend="peft"` applies peft's LoRA to
    `target_modules` of any nn.Module (default: every nn.Linear outside the model's head), keeps
    the base model frozen from the first task (`train_backbone_first` None: True for the own
    backend, False for peft) and routes by task label only.
    """
    rank = check_count("lora: rank", rank)
    alpha = check_positive("lora: alpha", alpha, allow_zero=False)
    if backend == "peft":
        check_peft_options(train_backbone_first, infer_task)
        return PeftLoRA(rank, alpha, target_modules)
    if backend != "own":
        raise ConfigError(f"lora: backend must be 'own' or 'peft', got {backend!r}")
    if target_modules is not None:
        raise ConfigError("lora: target_modules selects modules for backend='peft'; the own "
                          "backend adapts every linear layer of the backbone")
    first = True if train_backbone_first is None else train_backbone_first
    return AdapterStrategy("lora", partial(LoRA, rank=rank, alpha=alpha), first, infer_task)


def check_peft_options(train_backbone_first: bool | None, infer_task: bool) -> None:
    """Refuse the own backend's options that peft's LoRA does not implement."""
    if train_backbone_first:
        raise ConfigError("lora: backend='peft' keeps the base model frozen from the first task; drop "
                          "train_backbone_first or use backend='own' to train the backbone first")
    if infer_task:
        raise ConfigError("lora: backend='peft' activates the adapter of each batch's task label and "
                          "cannot infer the task; drop infer_task or use backend='own'")
