"""The task Jacobian of a hard-sharing model whose trunk is a plain `nn.Sequential` of Linear,
Flatten and elementwise layers, by a hand-written batched backward.

The trunk runs forward once without autograd, keeping each Linear's input and each activation's
derivative; every task's head reads its own leaf copy of the trunk's output, so one backward
through the heads gives the k cotangents of that output; those are pushed back through the trunk
together ([k, n, d]: one matrix product per layer for the input gradients) and each Linear's
weight gradient is written straight into its rows of J. Same arithmetic as `jacobian`, without
vmap's layout copies and batching overhead; any other trunk keeps `jacobian`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_globals

from lifelong.core.errors import IncompatibleError
from lifelong.grad.jacobian import require_used

Backward = Callable[[Tensor], Tensor]  # a layer's input cotangents [k, *input] from its output's


def _relu(module: nn.Module, h: Tensor) -> tuple[Tensor, Backward]:
    out = torch.relu(h)
    return out, lambda g: torch.ops.aten.threshold_backward(g, out, 0.0)


def _identity(module: nn.Module, h: Tensor) -> tuple[Tensor, Backward]:
    return h, lambda g: g


def _reshape(module: nn.Module, h: Tensor) -> tuple[Tensor, Backward]:
    shape = h.shape
    return module(h), lambda g: g.reshape(g.shape[0], *shape)


def _elementwise(module: nn.Module, h: Tensor) -> tuple[Tensor, Backward]:
    """Any elementwise layer: its derivative at h from one autograd pass (dropout's mask included)."""
    with torch.enable_grad():
        leaf = h.detach().requires_grad_(True)
        out = module(leaf.clone() if getattr(module, "inplace", False) else leaf)
        (derivative,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    return out.detach(), lambda g: g * derivative


LAYERS: dict[type[nn.Module], Callable[[nn.Module, Tensor], tuple[Tensor, Backward]]] = {
    nn.ReLU: _relu, nn.Identity: _identity, nn.Flatten: _reshape,
    **{kind: _elementwise for kind in (nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                                       nn.Softplus, nn.Dropout)},
}


def hook_free(modules: Sequence[nn.Module]) -> bool:
    """Whether no hook (global, or on one of `modules`) would run in a forward or backward."""
    g = module_globals
    if g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks or \
            g._global_backward_pre_hooks:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                   for m in modules)


def layerwise_parameters(trunk: nn.Module) -> list[Tensor] | None:
    """The trunk's parameters in the order of J's columns when `LayerwiseTrunk` can take it (a
    hook-free `nn.Sequential` of distinct, trainable Linear layers and the layers of `LAYERS`);
    None otherwise."""
    if type(trunk) is not nn.Sequential or not hook_free([trunk, *trunk]):
        return None
    linears = [m for m in trunk if type(m) is nn.Linear]
    if not linears or len({id(m) for m in linears}) < len(linears) or any(
            type(m) is not nn.Linear and type(m) not in LAYERS for m in trunk):
        return None
    params = [p for m in linears for p in (m.weight, m.bias) if p is not None]
    if not all(p.requires_grad for p in params) or len(params) != len(list(trunk.parameters())):
        return None
    return params


Tape = list[tuple[nn.Linear | None, Tensor | Backward]]


def _forward(trunk: nn.Sequential, x: Tensor) -> tuple[Tensor, Tape]:
    """The trunk's output and its tape: (Linear, its input) or (None, a layer's backward) per layer."""
    tape: Tape = []
    h = x
    with torch.no_grad():
        for layer in trunk:
            if type(layer) is nn.Linear:
                tape.append((layer, h))
                h = layer(h)
            else:
                h, backward = LAYERS[type(layer)](layer, h)
                tape.append((None, backward))
    return h, tape


@torch.no_grad()
def _backward(tape: Tape, g: Tensor, out: Tensor) -> None:
    """Write the trunk's k parameter-gradient rows into `out` (k × P) from the output cotangents g."""
    k = g.shape[0]
    first = next(i for i, (linear, _) in enumerate(tape) if linear is not None)
    end = out.shape[1]
    for i in range(len(tape) - 1, first - 1, -1):
        linear, saved = tape[i]
        if linear is None:
            g = saved(g)
            continue
        rows = saved.reshape(-1, linear.in_features)
        g_rows = g.reshape(k, -1, linear.out_features)
        if linear.bias is not None:
            end -= linear.out_features
            torch.sum(g_rows, 1, out=out[:, end:end + linear.out_features])
        end -= linear.weight.numel()
        for t in range(k):  # each task's weight gradient, written in place (a batched product copies)
            torch.mm(g_rows[t].T, rows, out=out[t, end:end + linear.weight.numel()].view_as(linear.weight))
        if i > first:
            g = (g_rows.reshape(-1, linear.out_features) @ linear.weight).reshape(k, *saved.shape)


class LayerwiseTrunk:
    """A trunk checked once for `layerwise_parameters`, whose task Jacobians it then computes."""

    def __init__(self, trunk: nn.Module) -> None:
        params = layerwise_parameters(trunk)
        if params is None:
            raise IncompatibleError("layerwise Jacobian: the trunk is not a hook-free nn.Sequential of trainable "
                                    "Linear, Flatten and elementwise layers; use lifelong.grad.jacobian")
        self.trunk, self.params = trunk, params
        self.modules = [trunk, *trunk]

    def jacobian(self, x: Tensor, task_losses: Callable[[list[Tensor]], Tensor],
                 private: Sequence[Sequence[Tensor]]) -> tuple[Tensor, Tensor]:
        """(losses (k,), J (k × P)) for k tasks whose heads read the trunk's output: `task_losses` maps
        k copies of that output (task t's loss must read the t-th) to the losses, `private[t]` are
        task t's own parameters. J's columns are `self.params` then each task's private parameters in
        turn (zero outside the task's row), as `jacobian(losses, [*self.params, *private])`."""
        if not hook_free(self.modules):
            raise IncompatibleError("layerwise Jacobian: a hook was registered on the trunk since it was "
                                    "checked; use lifelong.grad.jacobian, which runs hooks")
        k = len(private)
        z, tape = _forward(self.trunk, x)
        copies = [z.detach().requires_grad_(True) for _ in range(k)]
        losses = task_losses(copies)
        own = [p for task in private for p in task]
        grads = torch.autograd.grad(losses.sum(), [*copies, *own], allow_unused=True)
        require_used(own, grads[k:])
        cotangents = torch.stack([torch.zeros_like(z) if g is None else g for g in grads[:k]])
        n_shared = sum(p.numel() for p in self.params)
        jac = torch.empty(k, n_shared + sum(p.numel() for p in own), dtype=z.dtype, device=z.device)
        _backward(tape, cotangents, jac[:, :n_shared])
        flat = iter(grads[k:])
        jac[:, n_shared:] = torch.block_diag(*(torch.cat([next(flat).reshape(1, -1) for _ in task], dim=1)
                                               if task else z.new_zeros(1, 0) for task in private))
        return losses, jac
