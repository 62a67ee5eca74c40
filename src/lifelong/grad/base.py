"""The aggregator base classes: validate a Jacobian, form its Gramian, turn weights into an update."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.core.errors import DataError, ShapeMismatchError


def check_jacobian(J: Tensor, where: str) -> None:
    """Raise unless `J` is a finite 2-D tensor (k tasks × p parameters) with k ≥ 1."""
    if not isinstance(J, Tensor) or J.dim() != 2 or J.shape[0] < 1:
        got = tuple(J.shape) if isinstance(J, Tensor) else type(J).__name__
        raise ShapeMismatchError(
            f"{where}: expected a Jacobian of shape (k tasks, p parameters) with k >= 1, got {got}; "
            "stack one flattened gradient per task (lifelong.grad.jacobian does this)"
        )
    if not torch.isfinite(J).all():
        bad = sorted({int(i) for i in (~torch.isfinite(J)).nonzero()[:, 0]})
        raise DataError(
            f"{where}: the Jacobian of shape {tuple(J.shape)} has non-finite entries in the rows of "
            f"tasks {bad}; check those tasks' losses or lower the learning rate"
        )


def gramian(J: Tensor) -> Tensor:
    """G = J Jᵀ (k × k), formed in J's dtype and returned symmetric in float64 on the CPU."""
    G = (J @ J.T).to("cpu", torch.float64)
    return (G + G.T) / 2


class GeneratorState(nn.Module):
    """Holds the `torch.Generator` a stochastic method draws from and keeps its state in state_dict."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.generator = generator if generator is not None else torch.Generator()

    def get_extra_state(self) -> Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: Tensor) -> None:
        self.generator.set_state(state)


class Aggregator(nn.Module):
    """Maps a Jacobian (k × p) to one update direction (p); call it as `aggregator(J)`.

    `on_representation` tells the multi-task engine to build the Jacobian from the gradients of
    the task losses w.r.t. the shared representation (the encoder's output), aggregate those, and
    back-propagate the aggregated vector through the encoder (MGDA-UB, GradDrop); otherwise the
    Jacobian is taken w.r.t. the shared parameters. `last_weights` holds the task weights of the
    last call (k,), for logging.
    """

    on_representation: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.last_weights: Tensor | None = None

    def forward(self, J: Tensor) -> Tensor:
        check_jacobian(J, type(self).__name__)
        return self.aggregate(J)

    def aggregate(self, J: Tensor) -> Tensor:
        """The update direction of a validated Jacobian."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        public = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"}
        return ", ".join(f"{k}={v!r}" for k, v in public.items() if isinstance(v, (int, float, bool)))


class GramianAggregator(Aggregator):
    """An aggregator whose update is `weights(J Jᵀ) @ J`: subclasses implement `weights`."""

    def weights(self, G: Tensor) -> Tensor:
        """Task weights (k,) from the Gramian G (k × k, float64, CPU)."""
        raise NotImplementedError

    def aggregate(self, J: Tensor) -> Tensor:
        w = self.weights(gramian(J))
        self.last_weights = w.detach()
        return w.to(dtype=J.dtype, device=J.device) @ J
