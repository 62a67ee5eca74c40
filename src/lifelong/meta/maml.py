"""MAML's outer loop (Finn et al. 2017): query loss after inner adaptation, batched over tasks.

`maml_loss` adapts the fast weights on each task's support set and returns the mean query loss;
tasks are the leading dimension of every data tensor and are processed together by
`torch.func.vmap`. Its backward gives the meta-gradient on the slow weights (second order unless
`first_order=True`); `meta_step` applies it with any torch optimiser.
"""

from __future__ import annotations

import torch
from torch.func import vmap

from lifelong.core.errors import NonFiniteLossError, ShapeMismatchError
from lifelong.meta.fast_weights import Inputs, LossFn, Params, adapt


def maml_loss(loss_fn: LossFn, params: Params, support_x: Inputs, support_y: torch.Tensor,
              query_x: Inputs, query_y: torch.Tensor, *, steps: int = 1, lr: float = 0.01,
              first_order: bool = False) -> torch.Tensor:
    """Mean over tasks of the query loss at the adapted weights (Finn et al. 2017, eq. 1).

    Shapes: `support_*` (tasks, K, ...), `query_*` (tasks, Q, ...). Defaults: one inner step,
    α = 0.01 (the paper's regression setting); the meta learning rate belongs to the optimiser.
    """
    n_tasks = {t.shape[0] for t in _leaves(support_x, support_y, query_x, query_y)}
    if len(n_tasks) != 1:
        raise ShapeMismatchError(
            f"maml_loss: support and query tensors disagree on the number of tasks "
            f"(leading sizes {sorted(n_tasks)}); stack one entry per task along dimension 0"
        )

    def task_loss(sx: Inputs, sy: torch.Tensor, qx: Inputs, qy: torch.Tensor) -> torch.Tensor:
        fast = adapt(loss_fn, params, sx, sy, steps=steps, lr=lr, first_order=first_order)
        return loss_fn(fast, qx, qy)

    return vmap(task_loss)(support_x, support_y, query_x, query_y).mean()


def meta_step(optimizer: torch.optim.Optimizer, meta_loss: torch.Tensor) -> float:
    """One meta-optimiser step on the slow weights from `meta_loss`; returns the loss value."""
    value = float(meta_loss.detach())
    if not torch.isfinite(meta_loss.detach()):
        raise NonFiniteLossError(
            f"meta_step: the meta-loss is {value}; lower the inner or meta learning rate"
        )
    optimizer.zero_grad(set_to_none=True)
    meta_loss.backward()
    optimizer.step()
    return value


def _leaves(*items: Inputs) -> list[torch.Tensor]:
    return [t for item in items for t in (item if isinstance(item, tuple) else (item,))]
