"""GradVac (Wang et al. 2021): raise each pair's gradient cosine to an EMA target, not just to zero."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_positive
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GeneratorState, GramianAggregator


def gradvac_weights(G: Tensor, targets: Tensor, beta: float = 0.01,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One GradVac step (Wang et al. 2021, Algorithm 1): (weights, updated EMA targets φ̂).

    For each task i and each j ≠ i in a random order, with φ = cos(g_i', g_j): if φ < φ̂_ij,
    g_i' += ‖g_i'‖ (φ̂√(1−φ²) − φ√(1−φ̂²)) / (‖g_j‖ √(1−φ̂²)) g_j; then φ̂_ij ← (1−β) φ̂_ij + β φ.
    Row i of `C` holds the coefficients of g_i' on the task gradients (inner products via G).
    """
    k = len(G)
    rows = torch.arange(k)
    order = torch.stack([torch.randperm(k, generator=generator) for _ in range(k)])
    C, targets = torch.eye(k, dtype=G.dtype), targets.clone().to(G.dtype)
    norms = G.diagonal().clamp_min(0).sqrt()
    for step in range(k):
        j = order[:, step]
        norm_i = ((C @ G) * C).sum(1).clamp_min(0).sqrt()
        valid = (j != rows) & (norm_i > 0) & (norms[j] > 0)
        phi = torch.where(valid, (C * G[j]).sum(1) / (norm_i * norms[j]).clamp_min(1e-300), 0.0)
        phi = phi.clamp(-1, 1)
        tgt = targets[rows, j]
        gain = norm_i * (tgt * (1 - phi**2).sqrt() - phi * (1 - tgt**2).sqrt())
        gain = gain / (norms[j] * (1 - tgt**2).sqrt()).clamp_min(1e-300)
        C[rows, j] += torch.where(valid & (phi < tgt), gain, 0.0)
        targets[rows, j] = torch.where(valid, (1 - beta) * tgt + beta * phi, tgt)
    return C.sum(0), targets


@AGGREGATORS.register("gradvac", paper="Wang et al. 2021")
class GradVac(GramianAggregator):
    """GradVac: gradient vaccine with EMA cosine targets (Wang et al. 2021), over the whole model.

    β = 0.01 as in the paper; the k × k targets (zero at first, so the first step is PCGrad's)
    and the generator's state live in `state_dict`.
    """

    lazy = ("targets",)

    def __init__(self, beta: float = 0.01, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.beta = check_positive("gradvac: beta", beta, allow_zero=False)
        if self.beta > 1:
            raise ConfigError(f"gradvac: beta is an EMA rate in (0, 1], got {beta}")
        self.rng = GeneratorState(generator)
        self.register_buffer("targets", torch.zeros(0, 0, dtype=torch.float64))

    def weights(self, G: Tensor) -> Tensor:
        known = self.targets.shape == G.shape
        targets = self.targets.to("cpu", G.dtype) if known else G.new_zeros(G.shape)
        w, targets = gradvac_weights(G, targets, self.beta, self.rng.generator)
        self.targets = targets.to(self.targets.device)
        return w
