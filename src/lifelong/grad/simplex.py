"""Euclidean projection onto the probability simplex, for methods that keep task weights on it."""

from __future__ import annotations

import torch
from torch import Tensor


def project_simplex(v: Tensor) -> Tensor:
    """argmin_{w ≥ 0, Σw = 1} ‖w − v‖ along the last dimension (Duchi et al. 2008, Fig. 1).

    With u = v sorted in decreasing order and c_j = Σ_{i≤j} u_i − 1, ρ is the largest j with
    u_j > c_j / j (the condition holds exactly for j ≤ ρ) and w = max(v − c_ρ / ρ, 0).
    Batched over leading dimensions, O(k log k) per row.
    """
    u = v.sort(dim=-1, descending=True).values
    cssv = u.cumsum(-1) - 1
    ind = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = (u - cssv / ind > 0).sum(-1, keepdim=True)
    theta = cssv.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp_min(0)
