"""Per-task gradients in one batched backward pass, and writing a flat update back into `.grad`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.core.errors import IncompatibleError, ShapeMismatchError


def jacobian(losses: Tensor, params: Sequence[Tensor], *, retain_graph: bool = False,
             create_graph: bool = False) -> Tensor:
    """J (k × p): row i is ∂losses[i]/∂params, flattened and concatenated in the order of `params`.

    One vectorised backward (`is_grads_batched=True` with the identity as grad_outputs) instead of
    k passes. Pass `retain_graph=True` to back-propagate through the same graph again.
    """
    params = list(params)
    if not isinstance(losses, Tensor) or losses.dim() != 1 or losses.numel() < 1:
        got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
        raise ShapeMismatchError(f"jacobian: expected a vector of k >= 1 task losses, got shape {got}; "
                                 "stack the scalar losses with torch.stack")
    if not params:
        raise IncompatibleError("jacobian: no parameters given; pass the shared parameters")
    if not losses.requires_grad:
        raise IncompatibleError("jacobian: the losses do not depend on any tensor that requires "
                                "grad; compute them from the model's outputs without torch.no_grad()")
    eye = torch.eye(len(losses), dtype=losses.dtype, device=losses.device)
    grads = torch.autograd.grad(losses, params, grad_outputs=eye, is_grads_batched=True,
                                retain_graph=retain_graph, create_graph=create_graph,
                                allow_unused=True)
    require_used(params, grads)
    return torch.cat([g.reshape(len(losses), -1) for g in grads], dim=1)


def require_used(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
    """Raise if a parameter got no gradient (autograd's None for a tensor the losses do not reach)."""
    unused = [f"#{i} {tuple(p.shape)}" for i, (p, g) in enumerate(zip(params, grads, strict=True)) if g is None]
    if unused:
        raise IncompatibleError(f"jacobian: the losses do not depend on parameters {unused}; pass "
                                "only parameters used to compute the losses (e.g. the shared ones)")


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """The tensors (gradients, in parameter order) as one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def write_grad(params: Sequence[Tensor], vector: Tensor) -> None:
    """Add the slices of a flat vector (p,) to the `.grad` of each parameter, in order."""
    params = list(params)
    sizes = [p.numel() for p in params]
    if vector.dim() != 1 or vector.numel() != sum(sizes):
        raise ShapeMismatchError(f"write_grad: the vector has shape {tuple(vector.shape)} but the "
                                 f"{len(params)} parameters hold {sum(sizes)} values; pass one flat "
                                 "vector in the order of the parameters")
    for p, chunk in zip(params, torch.split(vector.detach(), sizes), strict=True):
        chunk = chunk.view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.add_(chunk)
