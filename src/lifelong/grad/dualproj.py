"""DualProj (Quinton & Rey 2024, TorchJD): the mean gradient projected onto the dual cone."""

from __future__ import annotations

from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator
from lifelong.grad.cone import project_weights
from lifelong.grad.mean import mean_weights


def dualproj_weights(G: Tensor) -> Tensor:
    """Weights of π(mean), π the projection onto {x : ⟨x, g_j⟩ ≥ 0 ∀ j}: w + argmin_{v ≥ 0}
    ½ vᵀ G v + (G w)ᵀ v with w = 1/k — GEM's dual (Lopez-Paz & Ranzato 2017) with the tasks
    themselves as constraints."""
    return project_weights(G, mean_weights(G))


@AGGREGATORS.register("dualproj", paper="Quinton & Rey 2024 (TorchJD)")
class DualProj(GramianAggregator):
    """DualProj: the closest non-conflicting vector to the mean gradient."""

    def weights(self, G: Tensor) -> Tensor:
        return dualproj_weights(G)
