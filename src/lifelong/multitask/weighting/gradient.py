"""Gradient-based weightings: every `lifelong.grad` aggregator, usable as a weighting by name."""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

import lifelong.grad  # noqa: F401  (registers the aggregators)
from lifelong.core.errors import ShapeMismatchError
from lifelong.core.registries import AGGREGATORS, WEIGHTINGS
from lifelong.grad.base import Aggregator
from lifelong.multitask.weighting.base import check_n_tasks


class GradientWeighting(nn.Module):
    """Wraps an aggregator: the engine builds the Jacobian J (k × p) and asks for the update.

    `kind = "gradient"` tells the engine to compute J (`lifelong.grad.jacobian`, one batched
    backward) instead of calling `combine`; `aggregate(J, losses)` returns the shared-parameter
    update (p,); `samples` > 1 asks for that many Jacobians of disjoint parts of the batch.
    When `on_representation` is True (MGDA-UB, GradDrop) J should be taken w.r.t. the shared
    representation and the update back-propagated through the encoder. `weights` holds the task
    weights of the last step (k,), for logging; `end_epoch` is a no-op.
    """

    kind = "gradient"

    def __init__(self, n_tasks: int, aggregator: Aggregator) -> None:
        super().__init__()
        check_n_tasks(n_tasks, "GradientWeighting")
        aggregator.check_tasks(n_tasks)
        self.n_tasks, self.aggregator = n_tasks, aggregator
        self.register_buffer("weights", torch.ones(n_tasks), persistent=False)

    @property
    def on_representation(self) -> bool:
        return self.aggregator.on_representation

    @property
    def samples(self) -> int:
        """How many independent Jacobians (of disjoint parts of the batch) the aggregator needs."""
        return self.aggregator.samples

    def aggregate(self, J: Tensor, losses: Tensor | None = None, representation: Tensor | None = None) -> Tensor:
        """The update direction (p,) for the per-task gradients J (k × p, or samples × k × p), the
        task losses (k,), which aggregators with `needs_losses` use, and the representation J was
        taken at, which those with `needs_representation` use (GradDrop)."""
        if isinstance(J, Tensor) and J.dim() >= 2 and J.shape[-2] != self.n_tasks:
            raise ShapeMismatchError(f"{type(self.aggregator).__name__}: the Jacobian has "
                                     f"{J.shape[-2]} task rows (shape {tuple(J.shape)}) but the "
                                     f"weighting was built for {self.n_tasks} tasks")
        update = self.aggregator(J, losses, representation=representation)
        if self.aggregator.last_weights is not None:
            self.weights = self.aggregator.last_weights.to(self.weights)
        return update

    @property
    def jacobian_free(self) -> bool:
        """Whether the aggregator's weights ignore J (sum, mean, constant, RGW): the engine then takes the
        update as the gradient of Σ_t w_t L_t, with `combination()`'s weights, instead of forming J."""
        return self.aggregator.jacobian_free

    def combination(self) -> Tensor:
        """This step's task weights (k,) of a `jacobian_free` aggregator, recorded as `weights`."""
        w = self.aggregator.combination(self.n_tasks)
        self.aggregator.last_weights = w.detach()
        self.weights = w.to(self.weights)
        return w

    def task_scales(self, losses: Tensor) -> Tensor | None:
        """Factors on each task's head gradient (None: unscaled), from the aggregator."""
        return self.aggregator.task_scales(losses)

    def end_epoch(self, mean_losses: Tensor) -> None:
        """Gradient weightings keep no epoch history."""


def _builder(name: str):  # noqa: ANN202
    """A weighting builder for aggregator `name`; its signature is (n_tasks, *aggregator's keys*)."""
    aggregator = AGGREGATORS.get(name)

    def build(n_tasks: int, **kwargs) -> GradientWeighting:  # noqa: ANN003
        return GradientWeighting(n_tasks, AGGREGATORS.build(name, **kwargs))

    sig = inspect.signature(aggregator)
    first = inspect.Parameter("n_tasks", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int)
    build.__signature__ = sig.replace(parameters=[first, *sig.parameters.values()],
                                      return_annotation=GradientWeighting)
    build.__doc__ = aggregator.__doc__
    build.__name__ = build.__qualname__ = f"build_{name}"
    return build


for _name in AGGREGATORS.names():
    _meta = AGGREGATORS.meta(_name)
    WEIGHTINGS.register(_name, aliases=_meta["aliases"], kind="gradient",
                        paper=_meta.get("paper"))(_builder(_name))
