"""Continual-learning gradient projections: GEM's dual-cone QP and A-GEM's closed form."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.errors import ShapeMismatchError
from lifelong.grad.base import check_jacobian, gramian
from lifelong.grad.cone import dual_cone_weights


def _check_vector(g: Tensor, name: str, where: str) -> None:
    if not isinstance(g, Tensor) or g.dim() != 1:
        got = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
        raise ShapeMismatchError(f"{where}: `{name}` must be a flat gradient vector (p,), got {got}")


def agem_project(g: Tensor, g_ref: Tensor) -> Tensor:
    """A-GEM (Chaudhry et al. 2019, Eq. 11): g − (gᵀg_ref / g_refᵀg_ref) g_ref if gᵀg_ref < 0, else g."""
    _check_vector(g, "g", "agem_project")
    _check_vector(g_ref, "g_ref", "agem_project")
    if g.shape != g_ref.shape:
        raise ShapeMismatchError(f"agem_project: g has {g.numel()} entries but g_ref has "
                                 f"{g_ref.numel()}; both must be gradients of the same parameters")
    dot = g @ g_ref
    if dot >= 0:
        return g
    return g - (dot / (g_ref @ g_ref)) * g_ref


def gem_project(g: Tensor, G_mem: Tensor, margin: float = 0.5) -> Tensor:
    """GEM (Lopez-Paz & Ranzato 2017, Eqs. 10–13): g unchanged if ⟨g, g_k⟩ ≥ 0 for every memory
    gradient g_k (rows of G_mem), else g̃ = G_memᵀ v + g with v the solution of the dual QP
    min ½ vᵀ(G_mem G_memᵀ)v + gᵀG_memᵀv s.t. v ≥ margin (the paper's γ, 0.5 as in the authors'
    code), solved exactly in float64 as non-negative least squares. Then ⟨g̃, g_k⟩ ≥ 0 for all k.
    """
    _check_vector(g, "g", "gem_project")
    if isinstance(G_mem, Tensor) and G_mem.dim() == 2 and G_mem.shape[0] == 0:
        return g  # no memory yet: nothing to protect
    check_jacobian(G_mem, "gem_project (G_mem)")
    if G_mem.shape[1] != g.numel():
        raise ShapeMismatchError(f"gem_project: G_mem has shape {tuple(G_mem.shape)} but g has "
                                 f"{g.numel()} entries; each row must be a gradient of the same "
                                 "parameters as g")
    mem = G_mem.to(torch.float64)
    u = (mem @ g.to(torch.float64)).cpu()
    if (u >= 0).all():
        return g
    G = gramian(mem)
    # v = margin + w, w ≥ 0: the linear term becomes u + margin · G 1
    v = margin + dual_cone_weights(G, u + margin * G.sum(1))
    return g + v.to(dtype=G_mem.dtype, device=G_mem.device) @ G_mem
