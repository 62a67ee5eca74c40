"""PCGrad (Yu et al. 2020): project each task gradient off the gradients it conflicts with."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GeneratorState, GramianAggregator


def pcgrad_weights(G: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Weights of Σ_i g_i^PC, where g_i^PC starts at g_i and, for j ≠ i in a random order, drops its
    component along g_j whenever ⟨g_i^PC, g_j⟩ < 0 (Yu et al. 2020, Algorithm 1).

    Row i of `C` holds the coefficients of g_i^PC on the task gradients, so inner products come
    from the Gramian: ⟨g_i^PC, g_j⟩ = (C G)_ij. All tasks advance together, one partner per step.
    """
    k = len(G)
    rows = torch.arange(k)
    order = torch.stack([torch.randperm(k, generator=generator) for _ in range(k)])
    C = torch.eye(k, dtype=G.dtype)
    for step in range(k):
        j = order[:, step]
        inner = (C * G[j]).sum(1)
        norm2 = G[j, j]
        project = (j != rows) & (inner < 0) & (norm2 > 0)
        C[rows, j] -= torch.where(project, inner / norm2.clamp_min(1e-300), 0.0)
    return C.sum(0)


@AGGREGATORS.register("pcgrad", paper="Yu et al. 2020")
class PCGrad(GramianAggregator):
    """PCGrad: the sum of the task gradients after pairwise conflict projection (Yu et al. 2020).

    The partner order is drawn from `generator` (its state is kept in `state_dict`). For two tasks
    the result never conflicts with either gradient; for three or more it can.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.rng = GeneratorState(generator)

    def weights(self, G: Tensor) -> Tensor:
        return pcgrad_weights(G, self.rng.generator)
