"""LoRA per task on any nn.Module through Hugging Face `peft` (the optional extra `adapters`).

Each task injects a LoRA adapter named `task_<slot>` into `target_modules` and trains it with
the modules named in `train_modules` (the head); earlier adapters and the rest of the model stay
frozen, BatchNorm statistics included (they normalise with the stored ones). Before every
forward the adapter of the batch's task is activated, so a batch (training or evaluation) must
hold one task. `peft` is imported when the strategy is built.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.continual.task_identity import TaskSlots, check_shared_head
from lifelong.core.errors import ConfigError, IncompatibleError, MissingExtraError
from lifelong.models.layer_list import freeze_statistics

INSTALL = "pip install lifelong[adapters]"


def load_peft() -> ModuleType:
    """The `peft` package, or MissingExtraError with the install command."""
    try:
        return importlib.import_module("peft")
    except ImportError as exc:
        raise MissingExtraError(f"lora with backend='peft' needs the optional package peft: {INSTALL} "
                                "(or use backend='own', which needs nothing extra)") from exc


def adapter_name(slot: int) -> str:
    """The peft adapter name of a task slot."""
    return f"task_{slot}"


def linear_names(model: nn.Module, exclude: tuple[str, ...]) -> list[str]:
    """Names of the model's nn.Linear modules outside the modules named in `exclude`."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not n.startswith(exclude)]


def check_targets(model: nn.Module, targets: Sequence[str], exclude: tuple[str, ...]) -> None:
    """Refuse target names that match no module the way peft matches them (whole name or dotted suffix)."""
    names = [n for n, _ in model.named_modules()]
    unknown = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if unknown:
        raise ConfigError(f"lora: target_modules {unknown} name no module of the model; name linear "
                          f"layers by their full name or last parts, e.g. {linear_names(model, exclude)}")


class PeftLoRA(Plugin):
    """peft's LoRA, one named adapter per task, activated by task label before each forward."""

    name = "lora"
    restructures = routes_model = grows_parameters = True
    needs_task_labels = True
    settings = ("task",)

    def __init__(self, rank: int, alpha: float, target_modules: Sequence[str] | None = None,
                 train_modules: Sequence[str] = ("head",)) -> None:
        self.peft = load_peft()
        if isinstance(target_modules, str):
            raise ConfigError(f"lora: target_modules is a list of module names, got the string {target_modules!r}")
        self.rank, self.alpha = rank, alpha
        self.target_modules = list(target_modules) if target_modules else None
        self.train_modules = tuple(train_modules)
        self.slots = TaskSlots()
        self.tuner_layers: list[nn.Module] = []
        self._statistics: list[RemovableHandle] = []

    def _inject(self, model: nn.Module, slot: int) -> None:
        # Resolved once, on the model before any adapter: peft's own layers are nn.Linear too.
        if slot == 0:
            self.target_modules = self.target_modules or linear_names(model, self.train_modules)
            check_targets(model, self.target_modules, self.train_modules)
        config = self.peft.LoraConfig(r=self.rank, lora_alpha=self.alpha, target_modules=self.target_modules)
        with warnings.catch_warnings():  # one adapter per task is the point: peft warns from the second on
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            self.peft.inject_adapter_in_model(config, model, adapter_name=adapter_name(slot))
        layer_type = importlib.import_module("peft.tuners.tuners_utils").BaseTunerLayer
        self.tuner_layers = [m for m in model.modules() if isinstance(m, layer_type)]

    def _activate(self, slots: torch.Tensor) -> None:
        present = slots.unique()
        if present.numel() != 1:
            raise IncompatibleError("lora with backend='peft' activates one adapter per forward; "
                                    "give it batches of one task")
        for layer in self.tuner_layers:
            layer.set_adapter(adapter_name(int(present)))

    def before_experience(self, ctx: Context) -> None:
        check_shared_head(ctx, self.name)
        slot = self.slots.add(ctx.experience.task, self.name)
        self._inject(ctx.model, slot)
        current = f".{adapter_name(slot)}."
        for n, p in ctx.model.named_parameters():
            p.requires_grad_(current in n or n.startswith(self.train_modules))
        frozen = [m for n, m in ctx.model.named_modules()
                  if getattr(m, "track_running_stats", False) and not n.startswith(self.train_modules)]
        self._statistics = self._statistics or [hook for m in frozen for hook in freeze_statistics(m)]

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        self._activate(self.slots.of(batch.t))
        return batch

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if self.slots.labels:
            self._activate(self.slots.of(t))
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.slots.labels), "target_modules": self.target_modules}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slots = TaskSlots(state["tasks"])
        self.target_modules = state["target_modules"]

    def restore(self, model: nn.Module) -> None:
        for slot in range(len(self.slots)):
            self._inject(model, slot)
