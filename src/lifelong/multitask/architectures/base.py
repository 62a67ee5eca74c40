"""`MultiTaskModel`: what every multi-task architecture exposes to the engine and diagnostics.

`forward(x)` returns a dict of task outputs. `task_parameters()` are the parameters whose
gradient comes from one task only (heads, gates, private experts); `shared_parameters()` are
all the others, the ones gradient aggregators (PCGrad, MGDA, ...) act on. `penalty()` is a
coupling term added to the loss (zero unless the architecture couples its parts, e.g. soft
sharing). `representation` is the last forward's shared features where one exists (MGDA-UB).
Where every shared parameter sits in modules reading the input as is (hard sharing's backbone,
MMoE's experts), `trunks()` names them and `task_output(task, x, join(outputs))` gives each task's
output from theirs; `layerwise()` then lets the trainer take the task Jacobian layer by layer, each
task's loss read from `layerwise_output`. Cross-stitch and PLE above one level override `layerwise()`
to go stage by stage through their mixed columns and levels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from lifelong.core.errors import ConfigError
from lifelong.grad.layerwise import LayerwiseTrunks, layerwise_parameters
from lifelong.grad.stitched import StitchedColumns

ModuleFactory = Callable[[], nn.Module]


class MultiTaskModel(nn.Module):
    """Base of the architectures: task heads by name, shared/task parameter split, penalty."""

    def __init__(self, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ConfigError(f"{type(self).__name__} needs at least one task head; got none")
        self.heads = nn.ModuleDict(dict(heads))
        self.representation: torch.Tensor | None = None

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.heads.keys())

    def task_parameters(self) -> list[nn.Parameter]:
        """Parameters reached by a single task's loss (default: the heads)."""
        return list(self.heads.parameters())

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters reached by several tasks' losses: every parameter not task-specific."""
        private = {id(p) for p in self.task_parameters()}
        return [p for p in self.parameters() if id(p) not in private]

    def own_parameters(self, task: str) -> list[nn.Parameter]:
        """The task parameters of `task` alone (default: its head)."""
        return list(self.heads[task].parameters())

    def trunks(self) -> list[nn.Module] | None:
        """Modules holding every shared parameter, each reading the input as is, such that each
        task's output is `task_output(task, x, join(their outputs))`; None (the default) where
        shared and task-specific parts interleave."""
        return None

    def layerwise(self) -> LayerwiseTrunks | StitchedColumns | None:
        """The layerwise Jacobian of the shared parameters over `trunks()`, when there are trunks and
        each is a plain Sequential `LayerwiseTrunks` takes; else None."""
        trunks = self.trunks()
        if trunks is None or any(layerwise_parameters(trunk) is None for trunk in trunks):
            return None
        return LayerwiseTrunks(trunks)

    def join(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The shared features from the outputs `layerwise()` gives a task (only where it is not None)."""
        raise NotImplementedError(f"{type(self).__name__} has no trunks")

    def task_output(self, task: str, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """`task`'s output from the input and its joined features (only where `layerwise()` is not None)."""
        raise NotImplementedError(f"{type(self).__name__} has no trunks")

    def layerwise_output(self, task: str, x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        """`task`'s output from the input and the outputs `layerwise()` gives it (where it is not None)."""
        return self.task_output(task, x, self.join(outputs))

    def penalty(self) -> torch.Tensor:
        """Coupling term added to the training loss (zero by default)."""
        return torch.zeros((), device=next(self.parameters()).device)

    def apply_heads(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each task's head on that task's features."""
        return {t: head(features[t]) for t, head in self.heads.items()}


def build(factory: ModuleFactory, what: str) -> nn.Module:
    """Call a module factory and check it returned an `nn.Module`."""
    module = factory()
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"{what} factory returned {type(module).__name__}; it must return a new nn.Module "
            f"each call (e.g. lambda: nn.Sequential(...))"
        )
    return module
