"""UPGrad (Quinton & Rey 2024, TorchJD): the mean of each task gradient projected onto the dual cone."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator
from lifelong.grad.cone import project_weights


def upgrad_weights(G: Tensor) -> Tensor:
    """Weights of (1/k) Σ_i π(g_i), π the projection onto {x : ⟨x, g_j⟩ ≥ 0 ∀ j}.

    π(g_i) = g_i + Jᵀ v_i with v_i = argmin_{v ≥ 0} ½ vᵀ G v + (G e_i)ᵀ v, so the weights are
    the mean of the rows of I + V.
    """
    return project_weights(G, torch.eye(len(G), dtype=G.dtype)).mean(0)


@AGGREGATORS.register("upgrad", paper="Quinton & Rey 2024 (TorchJD)")
class UPGrad(GramianAggregator):
    """UPGrad: non-conflicting (⟨d, g_i⟩ ≥ 0 ∀ i), permutation-invariant, equal to the mean without
    conflicts (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization")."""

    def weights(self, G: Tensor) -> Tensor:
        return upgrad_weights(G)
