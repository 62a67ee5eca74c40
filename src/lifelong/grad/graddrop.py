"""GradDrop (Chen et al. 2020): keep, per feature of a shared activation, only the task gradients of
one randomly chosen sign."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_positive
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator, GeneratorState


def graddrop(J: Tensor, activations: Tensor, leak: float = 0.0,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Sign-dropout update and the fraction of each task's features kept (Chen et al. 2020, Alg. 1).

    J (k × B·F) holds the task gradients w.r.t. the activations A (B samples × F features). Per
    task and feature, G_i = Σ_b sign(A_b) ∇_{A_b} L_i; purity P = ½ (1 + Σ_i G_i / Σ_i |G_i|); with
    one U ~ Uniform[0, 1) per feature, M_i = [P > U][G_i > 0] + [P < U][G_i < 0], shared by every
    sample; the update is Σ_i (ℓ + (1 − ℓ) M_i) ∇_A L_i with leak ℓ.
    """
    k, batch = len(J), len(activations)
    grads = J.reshape(k, batch, -1)
    G = (grads * activations.reshape(batch, -1).sign().to(J)).sum(1)
    # a floor instead of the usual + ε keeps P exactly 0 or 1 when every G_i has one sign
    purity = 0.5 * (1 + G.sum(0) / G.abs().sum(0).clamp_min(torch.finfo(G.dtype).tiny))
    u = torch.rand(purity.shape, generator=generator, dtype=purity.dtype).to(J.device)
    mask = ((purity > u) & (G > 0)) | ((purity < u) & (G < 0))
    scale = leak + (1 - leak) * mask.to(J.dtype)
    return (scale.unsqueeze(1) * grads).sum(0).reshape(-1), mask.to(J.dtype).mean(1)


@AGGREGATORS.register("graddrop", paper="Chen et al. 2020")
class GradDrop(Aggregator):
    """GradDrop: gradient sign dropout (Chen et al. 2020), leak ℓ = 0 and f = identity as in the paper.

    It works on the gradients at a shared activation z, so `on_representation` is True (the engine
    aggregates the gradients w.r.t. z and back-propagates the result) and `needs_representation`
    too: the mask of each feature comes from the batch-summed, sign(z)-weighted task gradients and
    is shared by the whole batch (Algorithm 1; the authors' lingvo layer and LibMTL do the same).
    As in Algorithm 1 and LibMTL, the result is not rescaled to the plain sum's norm. `last_weights`
    reports the fraction of each task's features kept.
    """

    on_representation = True
    needs_representation = True

    def __init__(self, leak: float = 0.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.leak = check_positive("graddrop: leak", leak)
        if self.leak > 1:
            raise ConfigError(f"graddrop: leak is a fraction in [0, 1], got {leak}")
        self.rng = GeneratorState(generator)

    def aggregate(self, J: Tensor, losses: Tensor | None = None, representation: Tensor | None = None) -> Tensor:
        update, kept = graddrop(J, representation, self.leak, self.rng.generator)
        self.last_weights = kept.detach()
        return update
