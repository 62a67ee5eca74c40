"""ConFIG (Liu et al. 2024): the direction with equal positive cosine to every task gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator


def config_weights(G: Tensor) -> Tensor:
    """Weights of d = (Σ_i ⟨g_i, u⟩) u, u the unit vector of U⁺1 (U: unit task gradients).

    With N = diag(‖g_i‖): U⁺1 = Jᵀ c, c = N⁻¹ (N⁻¹ G N⁻¹)⁺ 1; then ‖Jᵀc‖² = cᵀGc and
    Σ_i ⟨g_i, Jᵀc⟩ = 1ᵀGc (Liu et al. 2024, Eq. 2, without their optional momentum).
    """
    n = G.diagonal().clamp_min(0).sqrt()
    inv = torch.where(n > 0, 1 / n.clamp_min(1e-300), 0.0)
    c = inv * (torch.linalg.pinv(inv[:, None] * G * inv, hermitian=True) @ torch.ones_like(n))
    norm2 = c @ G @ c
    return c * (G @ c).sum() / norm2 if norm2 > 0 else torch.zeros_like(c)


@AGGREGATORS.register("config", paper="Liu et al. 2024")
class ConFIG(GramianAggregator):
    """ConFIG: conflict-free inverse gradients (Liu et al. 2024, "ConFIG: Towards Conflict-free
    Training of Physics Informed Neural Networks")."""

    def weights(self, G: Tensor) -> Tensor:
        return config_weights(G)
