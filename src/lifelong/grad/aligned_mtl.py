"""Aligned-MTL (Senushkin et al. 2023): align the task gradients to an orthogonal, equal-norm system."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.core.checks import check_vector
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import GramianAggregator

FLOAT32_EPS = torch.finfo(torch.float32).eps


def positive_eigen(G: Tensor, eps: float = FLOAT32_EPS) -> tuple[Tensor, Tensor]:
    """Square roots of the eigenvalues of G above k·eps·λ_max, and their eigenvectors."""
    lam, V = torch.linalg.eigh(G)
    keep = lam > lam.max().clamp_min(0) * len(G) * eps
    return lam[keep].sqrt(), V[:, keep]


def aligned_mtl_weights(G: Tensor, preference: Tensor | None = None) -> Tensor:
    """Weights B w with B = σ_min V Σ⁻¹ Vᵀ from G = V Σ² Vᵀ (Senushkin et al. 2023, Algorithm 1).

    The rows of B J are orthogonal with norm σ_min (the stable-rank condition number of the
    aligned system is 1); w is the task preference (uniform 1/k by default). Eigenvalues below
    k·eps₃₂·λ_max count as zero, so float32 round-off never sets σ_min.
    """
    if preference is not None and len(preference) != len(G):
        raise ConfigError(f"Aligned-MTL: the preference has {len(preference)} entries but there "
                          f"are {len(G)} tasks; give one weight per task")
    w = torch.full((len(G),), 1.0 / len(G), dtype=G.dtype) if preference is None else preference
    sigma, V = positive_eigen(G)
    if not len(sigma):
        return torch.zeros_like(w)
    return sigma.min() * (V / sigma) @ (V.T @ w.to(G.dtype))


@AGGREGATORS.register("aligned_mtl", aliases=("AlignedMTL", "Aligned-MTL"),
                      paper="Senushkin et al. 2023")
class AlignedMTL(GramianAggregator):
    """Aligned-MTL: the preference-weighted sum of the aligned gradients (Senushkin et al. 2023)."""

    def __init__(self, preference: Sequence[float] | None = None) -> None:
        super().__init__()
        self.preference = None if preference is None else check_vector("aligned_mtl: preference", preference)

    def weights(self, G: Tensor) -> Tensor:
        return aligned_mtl_weights(G, self.preference)
