"""Nash-MTL (Navon et al. 2022): the Nash bargaining solution, weights with α ⊙ (G α) = 1."""

from __future__ import annotations

from torch import Tensor

from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator
from lifelong.grad.fairgrad import fair_weights


def nash_mtl_weights(G: Tensor) -> Tensor:
    """Positive α with α_i (G α)_i = 1 for every task (Navon et al. 2022, Eq. 3); 0 for a zero gradient.

    Scale-invariant: g_i ↦ c g_i gives α_i ↦ α_i / c and leaves d = Σ α_i g_i unchanged.
    """
    return fair_weights(G, alpha=1.0)


@AGGREGATORS.register("nash_mtl", aliases=("NashMTL", "Nash-MTL"), paper="Navon et al. 2022")
class NashMTL(GramianAggregator):
    """Nash-MTL: d = Σ α_i g_i maximising Σ log ⟨d, g_i⟩ in a ball (Navon et al. 2022).

    Solved exactly (Newton on the convex potential ½αᵀGα − Σ log α_i) instead of the paper's
    sequence of convex programs. Where a solution exists (e.g. independent gradients),
    ⟨d, g_i⟩ = 1/α_i > 0 and ‖d‖ = √k, up to a 1e-8 relative ridge, k counting the tasks with
    nonzero gradients (a zero gradient gets α_i = 0). The authors' gradient-norm clipping
    (max_norm = 1) belongs to the optimiser, not to the aggregator.
    """

    def weights(self, G: Tensor) -> Tensor:
        return nash_mtl_weights(G)
