"""GradDrop (Chen et al. 2020): keep, per coordinate, only the gradients of one randomly chosen sign."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_positive
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator, GeneratorState


def graddrop(J: Tensor, leak: float = 0.0, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Sign-dropout update and the fraction of each task's coordinates kept (Chen et al. 2020).

    Per coordinate: purity P = ½ (1 + Σ_i g_i / Σ_i |g_i|); with U ~ Uniform[0, 1), the mask keeps
    positive entries where P > U and negative ones where P < U; the update is
    Σ_i (ℓ + (1 − ℓ) M_i) g_i with leak ℓ.
    """
    purity = 0.5 * (1 + J.sum(0) / (J.abs().sum(0) + 1e-7))
    u = torch.rand(purity.shape, generator=generator, dtype=purity.dtype).to(J.device)
    mask = ((purity > u) & (J > 0)) | ((purity < u) & (J < 0))
    scale = leak + (1 - leak) * mask.to(J.dtype)
    return (scale * J).sum(0), mask.to(J.dtype).mean(1)


@AGGREGATORS.register("graddrop", paper="Chen et al. 2020")
class GradDrop(Aggregator):
    """GradDrop: gradient sign dropout (Chen et al. 2020), leak ℓ = 0 as in the paper.

    The paper applies it to the gradients at a shared activation, so `on_representation` is True:
    the engine aggregates the per-task gradients w.r.t. the shared representation and
    back-propagates the result. `last_weights` reports the fraction of each task's entries kept.
    """

    on_representation = True

    def __init__(self, leak: float = 0.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.leak = check_positive("graddrop: leak", leak)
        if self.leak > 1:
            raise ConfigError(f"graddrop: leak is a fraction in [0, 1], got {leak}")
        self.rng = GeneratorState(generator)

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        update, kept = graddrop(J, self.leak, self.rng.generator)
        self.last_weights = kept.detach()
        return update
