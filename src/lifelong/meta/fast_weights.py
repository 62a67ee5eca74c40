"""Fast weights: SGD on explicit dictionaries of tensors, the inner loop of MAML, OML and ANML.

A loss function here is functional, `loss_fn(params, x, y) -> scalar`, where `params` maps names
to tensors; the module itself is never cloned or modified. Gradients come from `torch.func.grad`,
so every function composes with `torch.func.vmap` (batched over tasks) and with ordinary autograd
(the outer, meta-level backward). Second-order updates keep the graph of each inner gradient;
first-order ones (FOMAML, Finn et al. 2017, section 5.2) detach it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad

from lifelong.core.errors import ConfigError, ShapeMismatchError

Params = dict[str, torch.Tensor]
Inputs = torch.Tensor | tuple[torch.Tensor, ...]
LossFn = Callable[[Params, Inputs, torch.Tensor], torch.Tensor]


def params_of(module: nn.Module) -> Params:
    """The module's parameters as a name → tensor dictionary (the tensors themselves, not copies)."""
    return dict(module.named_parameters())


def functional_loss(module: nn.Module, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                    ) -> LossFn:
    """`loss_fn(params, x, y) = criterion(module(*x) with params, y)` via `functional_call`."""

    def loss_fn(params: Params, x: Inputs, y: torch.Tensor) -> torch.Tensor:
        args = x if isinstance(x, tuple) else (x,)
        return criterion(functional_call(module, params, args), y)

    return loss_fn


def sgd_step(loss_fn: LossFn, params: Params, x: Inputs, y: torch.Tensor, lr: float,
             first_order: bool = False) -> Params:
    """One SGD step on the fast weights: `θ' = θ - lr ∇θ loss_fn(θ, x, y)`."""
    grads = grad(loss_fn)(params, x, y)
    if first_order:
        grads = {k: g.detach() for k, g in grads.items()}
    return {k: p - lr * grads[k] for k, p in params.items()}


def adapt(loss_fn: LossFn, params: Params, x: Inputs, y: torch.Tensor, *, steps: int = 1,
          lr: float = 0.01, first_order: bool = False) -> Params:
    """MAML inner loop (Finn et al. 2017): `steps` SGD steps on one support set.

    Defaults are the paper's regression setting: one step, α = 0.01.
    """
    check_inner(steps, lr)
    for _ in range(steps):
        params = sgd_step(loss_fn, params, x, y, lr, first_order)
    return params


def adapt_online(loss_fn: LossFn, params: Params, xs: Inputs, ys: torch.Tensor, *, lr: float,
                 first_order: bool = False) -> Params:
    """Online inner loop (Javed & White 2019): one SGD step per element of a trajectory.

    `xs` (a tensor or a tuple of tensors) and `ys` have the trajectory as leading dimension; step
    k trains on `xs[k], ys[k]` (one sample, or a small batch when the element has a batch dim).
    The loop is sequential by definition: step k starts from the weights step k-1 left.
    """
    check_inner(1, lr)
    first = xs[0] if isinstance(xs, tuple) else xs
    if first.shape[0] != ys.shape[0]:
        raise ShapeMismatchError(
            f"adapt_online: the trajectory has {first.shape[0]} inputs but {ys.shape[0]} targets; "
            "give one target (or batch of targets) per step along dimension 0"
        )
    for k in range(ys.shape[0]):
        xk = tuple(t[k] for t in xs) if isinstance(xs, tuple) else xs[k]
        params = sgd_step(loss_fn, params, xk, ys[k], lr, first_order)
    return params


def check_inner(steps: int, lr: float) -> None:
    """Reject a non-positive number of inner steps or learning rate."""
    if steps < 1 or not lr > 0:
        raise ConfigError(
            f"inner loop: steps={steps} and lr={lr} must both be positive; the MAML defaults are "
            "steps=1, lr=0.01"
        )
