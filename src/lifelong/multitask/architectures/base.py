"""`MultiTaskModel`: what every multi-task architecture exposes to the engine and diagnostics.

`forward(x)` returns a dict of task outputs. `task_parameters()` are the parameters whose
gradient comes from one task only (heads, gates, private experts); `shared_parameters()` are
all the others, the ones gradient aggregators (PCGrad, MGDA, ...) act on. `penalty()` is a
coupling term added to the loss (zero unless the architecture couples its parts, e.g. soft
sharing). `representation` is the last forward's shared features where one exists (MGDA-UB);
`shared_trunk()` the module producing them when every head reads them as is (the trainer then
takes the task Jacobian layer by layer where it can).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from lifelong.core.errors import ConfigError

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

    def shared_trunk(self) -> nn.Module | None:
        """The module whose output every head reads as is (hard sharing), else None."""
        return None

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
