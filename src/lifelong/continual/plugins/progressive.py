"""Progressive Neural Networks (Rusu et al. 2016): a new column per task, earlier columns frozen.

The plugin rebuilds the model in place on the first experience: the backbone's layer list plus
a per-column output layer become column 0 of a `ProgressiveNet` installed as the backbone (the
model's own head becomes a pass-through, since every column has its own output). Each later
task adds a column with lateral adapters from all earlier columns; a finished column and its
adapters get `requires_grad=False`, so they leave the optimiser and stay bit-identical. The
task label chooses the column; with `infer_task=True` the column whose prediction has the
lowest entropy is chosen instead, which allows class- and domain-incremental evaluation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.continual.task_identity import TaskSlots, infer_by_entropy, slot_classes
from lifelong.core.checks import check_count, check_flag
from lifelong.core.registries import STRATEGIES
from lifelong.models.lateral import ProgressiveNet
from lifelong.models.layer_list import device_of, layer_list, reset_parameters
from lifelong.models.routed import Routed, classifier_backbone, install


@STRATEGIES.register("progressive", aliases=("pnn", "progressive_nets", "progressive-neural-networks"),
                     family="architecture", stores="columns", memory="O(T * params)",
                     compute="High", forgetting="None",
                     paper="Rusu et al. 2016, Progressive Neural Networks")
class Progressive(Plugin):
    """One column per task over the backbone's layer list (MLP or LeNet), laterals from all earlier ones.

    `lateral_width` is V's output width in each lateral adapter (None: the width of the layer's
    input, the paper's n_{i−1}-dimensional projection). Growth per task k ≥ 1: one column plus,
    for every weighted layer i ≥ 1, k α's + V (k·n_in·width + width) + U (width·n_out·kernel).
    """

    name = "progressive"
    restructures = routes_model = grows_parameters = True
    needs_task_labels = True
    settings = ("task",)

    def __init__(self, lateral_width: int | None = None, infer_task: bool = False) -> None:
        self.lateral_width = None if lateral_width is None else check_count("progressive: lateral_width", lateral_width)
        self.infer_task = check_flag("progressive: infer_task", infer_task)
        if self.infer_task:
            self.needs_task_labels, self.settings = False, ("task", "domain", "class")
        self.slots = TaskSlots()
        self.n_classes = 0
        self.input_shape: list[int] = []
        self.router: Routed | None = None

    @property
    def net(self) -> ProgressiveNet:
        return self.router.net

    def _build(self, model: nn.Module, generator: torch.Generator) -> None:
        backbone = classifier_backbone(model)
        layers = layer_list(backbone, self.input_shape)
        head = reset_parameters(nn.Linear(backbone.out_features, self.n_classes), generator)
        head = head.to(device_of(backbone))
        self.router = install(model, ProgressiveNet([*layers, head], self.lateral_width), own_head=True)

    def before_experience(self, ctx: Context) -> None:
        self.slots.add(ctx.experience.task, self.name)
        if self.router is None:
            self.n_classes, self.input_shape = ctx.stream.n_classes, list(ctx.stream.input_shape)
            self._build(ctx.model, ctx.generator)
        else:
            self.net.add_column(ctx.generator)

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        self.router.route(self.slots.of(batch.t))
        return batch

    def after_experience(self, ctx: Context) -> None:
        self.net.freeze()

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if self.router is None:
            return None
        if not self.infer_task:
            self.router.route(self.slots.of(t))
            return None
        logits = torch.stack(self.net.outputs(x, len(self.slots)))
        return infer_by_entropy(logits, slot_classes(ctx, self.slots.labels))

    def parameter_report(self) -> dict[str, Any]:
        """Parameters in total and added per task (a column plus its lateral adapters)."""
        if self.router is None:
            return {"parameters": 0, "added": []}
        added = [self.net.column_parameters(k) for k in range(len(self.slots))]
        return {"parameters": sum(p.numel() for p in self.net.parameters()), "added": added}

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.slots.labels), "n_classes": self.n_classes,
                "input_shape": list(self.input_shape)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slots = TaskSlots(state["tasks"])
        self.n_classes, self.input_shape = int(state["n_classes"]), list(state["input_shape"])

    def restore(self, model: nn.Module) -> None:
        if not self.slots.labels:
            return
        generator = torch.Generator().manual_seed(0)  # placeholder values: the checkpoint overwrites them
        self._build(model, generator)
        for _ in range(len(self.slots) - 1):
            self.net.add_column(generator)
        self.net.freeze()
