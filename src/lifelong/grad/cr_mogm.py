"""CR-MOGM (Zhou et al. 2022): smooth a gradient-manipulation method's task weights by an EMA over steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lifelong.core.checks import check_numbers
from lifelong.core.errors import ConfigError, IncompatibleError, ShapeMismatchError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator


def cr_mogm_weights(running: Tensor | None, fresh: Tensor, alpha: float = 0.9) -> Tensor:
    """λ_t = α λ_{t−1} + (1 − α) λ̂_t, with λ_1 = λ̂_1 (`running` is None at the first step)."""
    return fresh if running is None else alpha * running + (1 - alpha) * fresh


def gramian_bases() -> list[str]:
    """The registered aggregators CR-MOGM can smooth: Gramian methods that need nothing but G."""
    return [n for n in AGGREGATORS.names() if isinstance(cls := AGGREGATORS.get(n), type)
            and issubclass(cls, GramianAggregator) and not cls.needs_losses and cls.samples == 1]


@AGGREGATORS.register("cr_mogm", aliases=("CRMOGM", "CR-MOGM"), paper="Zhou et al. 2022")
class CRMOGM(GramianAggregator):
    """Correlation-reduced stochastic multi-objective gradient manipulation ("On the Convergence of
    Stochastic Multi-Objective Gradient Manipulation and Beyond", Zhou et al. 2022): the weights
    λ̂_t that `base` (a Gramian aggregator, MGDA by default, built with `base_args`) computes from
    this step's mini-batch are averaged exponentially with the previous ones, which decorrelates
    the weights from the gradient noise and restores convergence.

    The paper lets α_t grow towards 1 as the learning rate decays; α = 0.9 is TorchJD's constant
    default (set `alpha` between steps to follow a schedule). λ_{t−1} and the base's state live in
    `state_dict`.
    """

    lazy = ("running",)

    def __init__(self, base: str = "mgda", alpha: float = 0.9, base_args: dict[str, Any] | None = None) -> None:
        super().__init__()
        if base_args is not None and not isinstance(base_args, Mapping):
            raise ConfigError(f"cr_mogm: base_args must map the base's arguments to values, got {base_args!r}")
        self.base = AGGREGATORS.build(base, **(base_args or {}))
        if not isinstance(self.base, GramianAggregator) or self.base.needs_losses or self.base.samples != 1:
            raise IncompatibleError(f"CR-MOGM averages the weights a Gramian aggregator computes from J Jᵀ; "
                                    f"{base!r} is not one. Choose base among {gramian_bases()}")
        self.alpha = alpha
        self.on_representation = self.base.on_representation
        self.register_buffer("running", torch.zeros(0, dtype=torch.float64))

    @property
    def alpha(self) -> float:
        """The EMA rate α ∈ [0, 1]; set it between steps to follow a schedule."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        (alpha,) = check_numbers("CR-MOGM", alpha=value)
        if not 0 <= alpha <= 1:
            raise ConfigError(f"CR-MOGM: alpha must be in [0, 1] (0: no smoothing), got {value}")
        self._alpha = alpha

    def weights(self, G: Tensor) -> Tensor:
        if len(self.running) not in (0, len(G)):
            raise ShapeMismatchError(f"CR-MOGM: its running weights are for {len(self.running)} tasks but the "
                                     f"Jacobian has {len(G)}; build a new aggregator for another number of tasks")
        running = self.running.to("cpu", G.dtype) if len(self.running) else None
        w = cr_mogm_weights(running, self.base.weights(G), self.alpha)
        self.running = w.detach().clone().to(self.running.device)
        return w
