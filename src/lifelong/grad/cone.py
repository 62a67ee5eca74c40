"""Exact small solves on a Gramian G (k × k, float64): the dual-cone QP and the min-norm point.

Both are non-negative least squares problems on a square root A of G (Aᵀ A = G), solved by
scipy's NNLS. G is scaled to unit largest diagonal and given a 1e-10 ridge, so A is square,
invertible and well conditioned even when task gradients are zero, repeated or opposite; the
ridge moves the solutions by about 1e-10 relative.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

RIDGE = 1e-10


def gramian_scale(G: Tensor) -> float:
    """The largest diagonal entry of G (1 when G is zero), to solve on a well-scaled copy."""
    top = float(G.diagonal().max())
    return top if top > 0 else 1.0


def _root(G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(A, σ, V) with A = diag(σ) Vᵀ and Aᵀ A = G/s + RIDGE·I (negative round-off clipped)."""
    lam, V = torch.linalg.eigh(G.to(torch.float64) / gramian_scale(G))
    sigma = (lam.clamp_min(0) + RIDGE).sqrt()
    return sigma[:, None] * V.T, sigma, V


def _nnls_rows(A: Tensor, B: Tensor) -> Tensor:
    """argmin_{v ≥ 0} ‖A v − b‖ for every row b of B."""
    A_np = A.numpy()
    return torch.from_numpy(np.stack([nnls(A_np, b.numpy())[0] for b in B]))


def dual_cone_weights(G: Tensor, u: Tensor) -> Tensor:
    """argmin_{v ≥ 0} ½ vᵀ G v + uᵀ v for each row of u ((k,) or (m, k)), u in the range of G.

    The dual of projecting x (with u = J x) onto the dual cone {y : J y ≥ 0}: the projection is
    x + Jᵀ v (Lopez-Paz & Ranzato 2017). With A = diag(σ) Vᵀ it is min ‖A v − b‖², b = −A⁻ᵀ u.
    """
    A, sigma, V = _root(G)
    rows = u.to("cpu", torch.float64).reshape(-1, len(G)) / gramian_scale(G)
    return _nnls_rows(A, -(rows @ V) / sigma).reshape(u.shape)


def project_weights(G: Tensor, W: Tensor) -> Tensor:
    """Weights of the projections of Jᵀw onto the dual cone {y : J y ≥ 0}, for each row w of W.

    w + argmin_{v ≥ 0} ½ vᵀ G v + (G w)ᵀ v, i.e. w + NNLS(A, −A w): formed from A alone, so the
    linear term is exactly consistent with G.
    """
    A = _root(G)[0]
    rows = W.to(torch.float64).reshape(-1, len(G))
    return (rows + _nnls_rows(A, -(rows @ A.T))).reshape(W.shape)


def min_norm_weights(G: Tensor) -> Tensor:
    """Weights on the simplex of the min-norm point of the convex hull of the rows of J (G = J Jᵀ).

    The solution x of min_{x ≥ 0} ‖A x‖² + (1ᵀx − 1)² is a positive multiple of the min-norm
    weights: its KKT conditions, divided by 1ᵀx, are theirs (cf. least-distance programming,
    Lawson & Hanson 1974, ch. 23).
    """
    A = _root(G)[0]
    M = torch.cat([A, torch.ones(1, len(G), dtype=torch.float64)])
    b = torch.zeros(1, len(M), dtype=torch.float64)
    b[0, -1] = 1.0
    x = _nnls_rows(M, b)[0]
    return x / x.sum()
