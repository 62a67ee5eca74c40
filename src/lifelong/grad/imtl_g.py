"""IMTL-G (Liu et al. 2021): the update with equal projections onto every task's unit gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator


def imtl_g_weights(G: Tensor) -> Tensor:
    """Weights α (Σα = 1) with ⟨d, g_i/‖g_i‖⟩ equal for all i: α ∝ G⁺ n, n_i = ‖g_i‖.

    Equivalent to the paper's closed form α₂:ₖ = g₁ Uᵀ (D Uᵀ)⁻¹ when G is invertible; zero weights
    when the normalising sum is not positive (the equal-projection direction would ascend).
    """
    n = G.diagonal().clamp_min(0).sqrt()
    v = torch.linalg.pinv(G, hermitian=True) @ n
    total = v.sum()
    return v / total if total > 1e-12 * v.abs().sum() else torch.zeros_like(v)


@AGGREGATORS.register("imtl_g", aliases=("IMTLG", "IMTL-G"), paper="Liu et al. 2021")
class IMTLG(GramianAggregator):
    """IMTL-G: impartial multi-task learning, gradient part (Liu et al. 2021, ICLR)."""

    def weights(self, G: Tensor) -> Tensor:
        return imtl_g_weights(G)
