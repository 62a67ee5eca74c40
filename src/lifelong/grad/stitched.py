"""The task Jacobian of cross-stitch columns (Misra et al., 2016) by a hand-written batched backward.

Column c of stage s runs on its own input; the k×k unit α_s then mixes the stage's outputs into the
next stage's inputs, x̃_c = Σ_s α_cs y_s, and task t's head reads column t's last mixture. The
stages run forward once without autograd (each column keeps a `layerwise` tape); one backward
through the heads gives each task's cotangent of its column; from there every task's cotangents
go down together ([k, n, ...] per column): through a unit by one product with αᵀ (its own gradient
by one product with the stage's outputs), through a column by `layerwise.backward`. Same
arithmetic as `jacobian`, without vmap's layout copies and batching overhead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lifelong.core.errors import IncompatibleError
from lifelong.grad.layerwise import backward, forward, hook_free, layerwise_parameters, leaf_gradients, write_private


class StitchedColumns:
    """Stages of k columns (each a Sequential `layerwise_parameters` takes) mixed by k×k units,
    checked once; computes the task Jacobian of the columns' and units' parameters."""

    def __init__(self, stages: Sequence[Sequence[nn.Module]], units: Sequence[Tensor]) -> None:
        found = [[layerwise_parameters(column) for column in stage] for stage in stages]
        k = len(found[0]) if found else 0
        if not found or len(units) != len(found) or any(len(stage) != k for stage in found) or \
                any(params is None for stage in found for params in stage) or \
                any(tuple(unit.shape) != (k, k) for unit in units):
            raise IncompatibleError("stitched Jacobian: every stage must hold one column per task, each a hook-free "
                                    "nn.Sequential the layerwise Jacobian takes, followed by a k×k unit; use "
                                    "lifelong.grad.jacobian")
        self.stages = [list(stage) for stage in stages]
        self.units = list(units)
        self.params = [*(p for stage in found for params in stage for p in params), *self.units]
        self.sizes = [[sum(p.numel() for p in params) for params in stage] for stage in found]
        self.modules = [m for stage in self.stages for column in stage for m in (column, *column)]

    def jacobian(self, x: Tensor, task_losses: Callable[[list[list[Tensor]]], Tensor],
                 private: Sequence[Sequence[Tensor]]) -> tuple[Tensor, Tensor]:
        """(losses (k,), J (k × P)) for the k tasks on a batch x: `task_losses` maps each task's last
        mixture (one single-entry list per task) to the losses, `private[t]` are task t's own
        parameters. J's columns are `self.params` then each task's private parameters in turn, as
        `jacobian(losses, [*self.params, *private])`."""
        if not hook_free(self.modules):
            raise IncompatibleError("stitched Jacobian: a hook was registered on a column since it was checked; "
                                    "use lifelong.grad.jacobian, which runs hooks")
        inputs, saved = [x] * len(private), []
        with torch.no_grad():
            for stage, unit in zip(self.stages, self.units, strict=True):
                outputs, tapes = zip(*(forward(column, h) for column, h in zip(stage, inputs, strict=True)),
                                     strict=True)
                stacked = torch.stack(outputs)
                saved.append((tapes, stacked))
                inputs = list(torch.tensordot(unit, stacked, dims=1).unbind(0))
        losses, leaf_grads, own_grads = leaf_gradients(task_losses, [[h.detach().requires_grad_(True)]
                                                                     for h in inputs], private)
        k, n_columns, n_stages = len(private), sum(map(sum, self.sizes)), len(self.stages)
        jac = torch.empty(k, n_columns + n_stages * k * k + sum(g.numel() for g in own_grads),
                          dtype=saved[0][1].dtype, device=x.device)
        unit_rows = jac[:, n_columns:n_columns + n_stages * k * k].view(k, n_stages, k, k)
        own = torch.stack([torch.zeros_like(h) if g is None else g for h, g in zip(inputs, leaf_grads, strict=True)])
        cotangents, end = None, n_columns  # cotangents[c, t]: task t's of column c's mixture
        with torch.no_grad():
            for s in range(n_stages - 1, -1, -1):
                tapes, stacked = saved[s]
                outputs, unit = stacked.reshape(k, -1), self.units[s].detach()
                if cotangents is None:  # the last mixture: task t's cotangent sits in column t alone
                    unit_rows[:, s].zero_()
                    tasks = torch.arange(k, device=x.device)
                    unit_rows[tasks, s, tasks] = own.reshape(k, -1) @ outputs.T
                    below = unit.T.unsqueeze(-1) * own.reshape(1, k, -1)
                else:
                    unit_rows[:, s] = (cotangents.reshape(k * k, -1) @ outputs.T).view(k, k, k).transpose(0, 1)
                    below = unit.T @ cotangents.reshape(k, -1)
                below = below.view(k, k, *stacked.shape[1:])
                pushed = []
                for c in range(k - 1, -1, -1):
                    end -= self.sizes[s][c]
                    pushed.append(backward(tapes[c], below[c], jac[:, end:end + self.sizes[s][c]], push=s > 0))
                cotangents = torch.stack(pushed[::-1]) if s > 0 else None
        write_private(jac, n_columns + n_stages * k * k, private, own_grads)
        return losses, jac
