"""The task Jacobian of a hard-sharing model whose trunk is a plain `nn.Sequential` of Linear,
convolution and affine batch or layer norm layers, elementwise activations, pooling and reshapes, by
a hand-written batched backward.

The trunk runs forward once without autograd, keeping each weighted layer's input and each other
layer's backward; every task's head reads its own leaf copy of the trunk's output, so one backward
through the heads gives the k cotangents of that output; those are pushed back through the trunk
together ([k, n, ...]: one product or transposed convolution per layer for the input gradients)
and each task's weight gradient is written straight into its row of J. Same arithmetic as
`jacobian`, without vmap's layout copies and batching overhead; any other trunk keeps `jacobian`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_globals

from lifelong.core.errors import IncompatibleError, ShapeMismatchError
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


def _per_row(module: nn.Module, h: Tensor) -> tuple[Tensor, Backward]:
    """A parameter-free layer acting on each row alone (pooling): its backward for k cotangents is
    one autograd pass through the layer applied to k stacked copies of its input."""
    def backward(g: Tensor) -> Tensor:
        k, n = g.shape[0], h.shape[0]
        with torch.enable_grad():
            stacked = h.expand(k, *h.shape).reshape(k * n, *h.shape[1:]).requires_grad_(True)
            (grad,) = torch.autograd.grad(module(stacked), stacked, g.reshape(k * n, *g.shape[2:]))
        return grad.view(k, *h.shape)

    return module(h), backward


POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool1d,
         nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
LAYERS: dict[type[nn.Module], Callable[[nn.Module, Tensor], tuple[Tensor, Backward]]] = {
    nn.ReLU: _relu, nn.Identity: _identity, nn.Flatten: _reshape, nn.Unflatten: _reshape,
    **{kind: _elementwise for kind in (nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                                       nn.Softplus, nn.Dropout)},
    **{kind: _per_row for kind in POOLS},
}


def _linear(layer: nn.Linear, x: Tensor, g: Tensor, weight_rows: Tensor, bias_rows: Tensor | None,
            push: bool) -> Tensor | None:
    """Write each task's weight (and bias) gradient rows; return the input cotangents if `push`."""
    k = g.shape[0]
    rows, g_rows = x.reshape(-1, layer.in_features), g.reshape(k, -1, layer.out_features)
    if bias_rows is not None:
        torch.sum(g_rows, 1, out=bias_rows)
    for t in range(k):  # each task's product written in place (a batched product would copy)
        torch.mm(g_rows[t].T, rows, out=weight_rows[t].view_as(layer.weight))
    return (g_rows.reshape(-1, layer.out_features) @ layer.weight).reshape(k, *x.shape) if push else None


def _per_task(backward: Callable[[Tensor, list[bool]], tuple], g: Tensor, weight_rows: Tensor,
              bias_rows: Tensor | None, push: bool) -> Tensor | None:
    """A layer's rows by its fused autograd backward, once per task: `backward(g_t, mask)` gives the
    (input, weight, bias) gradients the mask asks for, sharing their work as in autograd."""
    inputs = []
    for t in range(g.shape[0]):
        grad_input, grad_weight, grad_bias = backward(g[t], [push, True, bias_rows is not None])
        weight_rows[t].copy_(grad_weight.reshape(-1))
        if bias_rows is not None:
            bias_rows[t].copy_(grad_bias.reshape(-1))
        inputs.append(grad_input)
    return torch.stack(inputs) if push else None


def _conv(layer: nn.Conv1d | nn.Conv2d | nn.Conv3d, x: Tensor, g: Tensor, weight_rows: Tensor,
          bias_rows: Tensor | None, push: bool) -> Tensor | None:
    """As `_linear` for a zero-padded convolution, by its fused backward per task."""
    bias_sizes = None if layer.bias is None else [layer.bias.numel()]
    return _per_task(lambda g_t, mask: torch.ops.aten.convolution_backward(
        g_t, x, layer.weight, bias_sizes, layer.stride, layer.padding, layer.dilation, False,
        [0] * (layer.weight.dim() - 2), layer.groups, mask), g, weight_rows, bias_rows, push)


def _batch_norm(layer: nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d, x: Tensor, g: Tensor, weight_rows: Tensor,
                bias_rows: Tensor | None, push: bool) -> Tensor | None:
    """As `_linear` for an affine batch norm (Ioffe & Szegedy, 2015): batch statistics in training
    (every row's input cotangent then depends on the others'), running statistics in evaluation."""
    batch = layer.training or layer.running_mean is None
    saved = (None, None)
    if batch:  # the batch statistics as autograd saves them (no running statistics given: none updated)
        saved = torch.ops.aten.native_batch_norm(x, None, None, None, None, True, 0.0, layer.eps)[1:]
    return _per_task(lambda g_t, mask: torch.ops.aten.native_batch_norm_backward(
        g_t, x, layer.weight, layer.running_mean, layer.running_var, *saved, batch, layer.eps, mask),
        g, weight_rows, bias_rows, push)


def _layer_norm(layer: nn.LayerNorm, x: Tensor, g: Tensor, weight_rows: Tensor, bias_rows: Tensor | None,
                push: bool) -> Tensor | None:
    """As `_linear` for an affine layer norm (Ba et al., 2016): each row standardised on its own."""
    _, mean, rstd = torch.ops.aten.native_layer_norm(x, layer.normalized_shape, None, None, layer.eps)
    return _per_task(lambda g_t, mask: torch.ops.aten.native_layer_norm_backward(
        g_t, x, layer.normalized_shape, mean, rstd, layer.weight, layer.bias, mask), g, weight_rows, bias_rows, push)


NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)
WEIGHTED = {nn.Linear: _linear, nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
            **dict.fromkeys(NORMS[:3], _batch_norm), nn.LayerNorm: _layer_norm}


def _takes(layer: nn.Module) -> bool:
    if type(layer) in (nn.Conv1d, nn.Conv2d, nn.Conv3d):  # string padding and padding modes pad apart
        return layer.padding_mode == "zeros" and not isinstance(layer.padding, str)
    if type(layer) in NORMS:  # a norm without a scale is not a weighted layer
        return layer.weight is not None
    return type(layer) in WEIGHTED or (type(layer) in LAYERS and not getattr(layer, "return_indices", False))


def hook_free(modules: Sequence[nn.Module]) -> bool:
    """Whether no hook (global, or on one of `modules`) would run in a forward or backward."""
    g = module_globals
    if g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks or \
            g._global_backward_pre_hooks:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                   for m in modules)


def layerwise_parameters(trunk: nn.Module) -> list[Tensor] | None:
    """The trunk's parameters in the order of J's columns when `LayerwiseTrunks` can take it (a
    hook-free `nn.Sequential` of distinct, trainable Linear, zero-padded convolution and affine norm
    layers and the layers of `LAYERS`); None otherwise."""
    if type(trunk) is not nn.Sequential or not hook_free([trunk, *trunk]) or not all(map(_takes, trunk)):
        return None
    weighted = [m for m in trunk if type(m) in WEIGHTED]
    if not weighted or len({id(m) for m in weighted}) < len(weighted):
        return None
    params = [p for m in weighted for p in (m.weight, m.bias) if p is not None]
    if not all(p.requires_grad for p in params) or len(params) != len(list(trunk.parameters())):
        return None
    return params


Tape = list[tuple[nn.Module | None, Tensor | Backward]]


def forward(trunk: nn.Sequential, x: Tensor) -> tuple[Tensor, Tape]:
    """The trunk's output and its tape: (weighted layer, its input) or (None, a layer's backward)."""
    tape: Tape = []
    h = x
    with torch.no_grad():
        for layer in trunk:
            if type(layer) in WEIGHTED:
                tape.append((layer, h))
                h = layer(h)
            else:
                h, backward = LAYERS[type(layer)](layer, h)
                tape.append((None, backward))
    return h, tape


@torch.no_grad()
def backward(tape: Tape, g: Tensor, out: Tensor, push: bool = False) -> Tensor | None:
    """Write the trunk's k parameter-gradient rows into `out` (k × P) from the output cotangents g;
    with `push`, return the cotangents of the trunk's input as well."""
    first = next(i for i, (layer, _) in enumerate(tape) if layer is not None)
    end = out.shape[1]
    for i in range(len(tape) - 1, (0 if push else first) - 1, -1):
        layer, saved = tape[i]
        if layer is None:
            g = saved(g)
            continue
        bias_rows = None
        if layer.bias is not None:
            end -= layer.bias.numel()
            bias_rows = out[:, end:end + layer.bias.numel()]
        end -= layer.weight.numel()
        g = WEIGHTED[type(layer)](layer, saved, g, out[:, end:end + layer.weight.numel()], bias_rows,
                                  push or i > first)
    return g if push else None


def leaf_gradients(task_losses: Callable[[list[list[Tensor]]], Tensor], copies: list[list[Tensor]],
                   private: Sequence[Sequence[Tensor]]) -> tuple[Tensor, list[Tensor | None], list[Tensor]]:
    """(losses (k,), the gradients of the leaf `copies` row by row, each task's own-parameter gradients):
    one backward of the losses `task_losses(copies)` through the heads."""
    k = len(private)
    losses = task_losses(copies)
    if not isinstance(losses, Tensor) or losses.shape != (k,):
        got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
        raise ShapeMismatchError(f"layerwise Jacobian: task_losses must return the {k} task losses as one "
                                 f"vector ({k},), one per entry of `private`, got {got}")
    own = [p for task in private for p in task]
    leaves = [z for task in copies for z in task]
    grads = torch.autograd.grad(losses.sum(), [*leaves, *own], allow_unused=True)
    require_used(own, grads[len(leaves):])
    return losses, list(grads[:len(leaves)]), list(grads[len(leaves):])


def write_private(jac: Tensor, start: int, private: Sequence[Sequence[Tensor]], grads: list[Tensor]) -> None:
    """Fill J's columns from `start` on: task t's own-parameter gradients in row t, zero elsewhere."""
    flat = iter(grads)
    jac[:, start:] = torch.block_diag(*(torch.cat([next(flat).reshape(1, -1) for _ in task], dim=1)
                                        if task else jac.new_zeros(1, 0) for task in private))


class LayerwiseTrunks:
    """Trunks (each reading the batch as is) checked once for `layerwise_parameters`, whose task
    Jacobians it then computes; one trunk for hard sharing, the experts for a mixture of experts."""

    def __init__(self, trunks: Sequence[nn.Module]) -> None:
        found = [layerwise_parameters(trunk) for trunk in trunks]
        if not trunks or any(params is None for params in found):
            raise IncompatibleError("layerwise Jacobian: every trunk must be a hook-free nn.Sequential of trainable "
                                    "Linear, zero-padded convolution or affine batch/layer norm layers and "
                                    "elementwise, pooling or reshaping layers; use lifelong.grad.jacobian")
        self.trunks = list(trunks)
        self.params = [p for params in found for p in params]
        self.sizes = [sum(p.numel() for p in params) for params in found]
        self.modules = [m for trunk in trunks for m in (trunk, *trunk)]

    def jacobian(self, x: Tensor, task_losses: Callable[[list[list[Tensor]]], Tensor],
                 private: Sequence[Sequence[Tensor]]) -> tuple[Tensor, Tensor]:
        """(losses (k,), J (k × P)) for k tasks reading the trunks' outputs on a batch x:
        `task_losses` maps k copies of those outputs (one list per task; task t's loss must read
        the t-th) to the losses, `private[t]` are task t's own parameters. J's columns are
        `self.params` then each task's private parameters in turn (zero outside the task's row), as
        `jacobian(losses, [*self.params, *private])`."""
        if not hook_free(self.modules):
            raise IncompatibleError("layerwise Jacobian: a hook was registered on a trunk since it was "
                                    "checked; use lifelong.grad.jacobian, which runs hooks")
        k, m = len(private), len(self.trunks)
        outputs, tapes = zip(*(forward(trunk, x) for trunk in self.trunks), strict=True)
        copies = [[z.detach().requires_grad_(True) for z in outputs] for _ in range(k)]
        losses, leaf_grads, own_grads = leaf_gradients(task_losses, copies, private)
        n_shared = sum(self.sizes)
        jac = torch.empty(k, n_shared + sum(g.numel() for g in own_grads), dtype=outputs[0].dtype, device=x.device)
        start = 0
        for j, (z, tape, size) in enumerate(zip(outputs, tapes, self.sizes, strict=True)):
            cotangents = torch.stack([torch.zeros_like(z) if g is None else g for g in leaf_grads[j::m]])
            backward(tape, cotangents, jac[:, start:start + size])
            start += size
        write_private(jac, n_shared, private, own_grads)
        return losses, jac
