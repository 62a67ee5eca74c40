"""The loss-based weighting base class: task losses (k,) → the scalar total to back-propagate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lifelong.core.errors import ConfigError, IncompatibleError, NonFiniteLossError, ShapeMismatchError


def check_n_tasks(n_tasks: int, where: str) -> None:
    """Raise a ConfigError unless `n_tasks` is a positive integer."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ConfigError(f"{where}: n_tasks must be a positive integer, got {n_tasks!r}")


class LossWeighting(nn.Module):
    """Maps the vector of task losses to the total loss; never calls `backward()` itself.

    The engine calls `combine(losses, shared=…, step=…)` every step and back-propagates the result,
    calls `end_epoch(mean_losses)` after every epoch with the epoch's mean training loss per task
    (only DWA uses it), adds `parameters()` to its optimiser (uncertainty, GradNorm and IMTL-L learn
    theirs through the returned total) and saves `state_dict()`. `weights` holds the task weights
    of the last step (k,), for logging. A task sampler draws only some tasks at a step: then
    `combine(..., present=mask)` weighs only the drawn tasks' losses, through `weigh_present`, which
    the weightings that can weigh a subset implement (`weighs_subsets`; the others are refused with a
    sampler).
    """

    kind = "loss"

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        check_n_tasks(n_tasks, type(self).__name__)
        self.n_tasks = n_tasks
        self.register_buffer("weights", torch.ones(n_tasks), persistent=False)

    def combine(self, losses: Tensor, *, shared: Sequence[Tensor] | None = None,
                step: int = 0, present: Tensor | None = None) -> Tensor:
        """The scalar total loss for this step's task losses (k,); with `present` (k bools, the
        tasks a sampler drew) only those losses count and the others' entries are ignored."""
        mask = self._check_present(present)
        if mask is None:
            self._check(losses)
            total, weights = self.weigh(losses, shared=shared, step=step)
        else:
            self._check(losses, mask)
            losses = torch.where(mask.to(losses.device), losses, torch.zeros_like(losses))
            total, weights = self.weigh_present(losses, mask.to(losses.device), shared=shared, step=step)
        self.weights = weights.detach().to(self.weights.dtype)
        return total

    @property
    def weighs_subsets(self) -> bool:
        """Whether this weighting can weigh only the tasks a sampler draws (it implements `weigh_present`)."""
        return type(self).weigh_present is not LossWeighting.weigh_present

    def weigh(self, losses: Tensor, *, shared: Sequence[Tensor] | None,
              step: int) -> tuple[Tensor, Tensor]:
        """(total, weights) for validated losses: a weighting implements this, or `weigh_present`
        when it can weigh a subset of the tasks (then this weighs them all)."""
        if not self.weighs_subsets:
            raise NotImplementedError
        return self.weigh_present(losses, torch.ones_like(losses, dtype=torch.bool), shared=shared, step=step)

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        """(total, weights) of the `present` tasks alone (absent losses are 0 and absent weights
        must be 0); implemented by the weightings that can weigh a subset."""
        raise IncompatibleError(f"{type(self).__name__} weighs every task at each step and cannot weigh "
                                "the few a task sampler draws; drop the sampler or use e.g. uniform, "
                                "uncertainty, dwa or rlw")

    def end_epoch(self, mean_losses: Tensor) -> None:
        """Told the epoch's mean training loss per task (k,; NaN for a task a sampler never drew
        in the epoch); a no-op unless history is kept."""

    def _check_present(self, present: Tensor | None) -> Tensor | None:
        """`present` as a bool mask (k,), or None when it is None or selects every task."""
        if present is None:
            return None
        mask = torch.as_tensor(present)
        if mask.dtype != torch.bool or mask.shape != (self.n_tasks,) or not bool(mask.any()):
            raise ShapeMismatchError(f"{type(self).__name__}.combine: present must be a bool mask of "
                                     f"the {self.n_tasks} tasks selecting at least one, got {present!r}")
        return None if bool(mask.all()) else mask

    def _check(self, losses: Tensor, present: Tensor | None = None) -> None:
        name = type(self).__name__
        if not isinstance(losses, Tensor) or losses.dim() != 1 or len(losses) != self.n_tasks:
            got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ShapeMismatchError(f"{name}.combine: expected a vector of {self.n_tasks} task "
                                     f"losses, got shape {got}; stack them with torch.stack")
        finite = torch.isfinite(losses.detach())
        if present is not None:
            finite = finite | ~present.to(finite.device)
        if not finite.all():
            bad = [i for i, ok in enumerate(finite.tolist()) if not ok]
            raise NonFiniteLossError(f"{name}.combine: the losses of tasks {bad} are not finite "
                                     f"({losses.detach().tolist()}); lower the learning rate or "
                                     "check those tasks' targets")
