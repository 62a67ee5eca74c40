"""What the regularisation strategies share: flat parameter vectors, the quadratic penalty
Σ_i Ω_i (θ_i − θ*_i)² that EWC, online EWC, SI and MAS all add, running a model on given
parameters, and checks of per-sample inputs. The per-sample gradient statistics (EWC's Fisher,
MAS's sensitivity) are in `lifelong.continual.per_sample`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from lifelong.core.errors import ShapeMismatchError
from lifelong.models.layer_list import evaluating


def flat_params(model: nn.Module) -> torch.Tensor:
    """Every parameter of `model` as one vector (differentiable: gradients flow back to them)."""
    return torch.cat([p.reshape(-1) for p in model.parameters()])


def flat_grads(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """The `.grad` of `params` as one vector, zeros where a parameter has no gradient."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def param_shapes(model: nn.Module) -> list[list[int]]:
    """Shapes of the parameters in flattening order (plain lists, for state dicts)."""
    return [list(p.shape) for p in model.parameters()]


def quadratic_penalty(theta: torch.Tensor, anchor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ weight · (θ − anchor)² over flat vectors; `anchor`/`weight` may stack tasks as (T, P).

    Differentiable in θ; `anchor` and `weight` are constants of the penalty. (Training steps use
    `QuadraticPull`, which computes the same value and its gradient without autograd.)
    """
    if anchor.shape[-1] != theta.shape[-1] or weight.shape[-1] != theta.shape[-1]:
        raise ShapeMismatchError(f"quadratic_penalty: θ has {theta.shape[-1]} entries but the anchor "
                                 f"{tuple(anchor.shape)} and weight {tuple(weight.shape)} differ")
    return (weight * (theta - anchor).square()).sum()


def param_views(flat: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Views of `flat` shaped like each of `params`, in flattening order (writing one writes `flat`)."""
    pieces = flat.split([p.numel() for p in params])
    return [piece.view_as(p) for piece, p in zip(pieces, params, strict=True)]


class FlatBuffer:
    """A preallocated flat vector with one view shaped like each of `params`, made once and
    reused every step (copying into it costs no allocation, unlike `torch.cat`)."""

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.params = list(params)
        first = self.params[0]
        self.flat = torch.empty(sum(p.numel() for p in self.params), dtype=first.dtype, device=first.device)
        self.views = param_views(self.flat, self.params)

    def holds(self, params: Sequence[torch.Tensor]) -> bool:
        """Whether these are the very parameter tensors, of the same shapes, dtype and device, the
        buffer was made for (`model.double()` or `.to(device)` keeps the objects, not the buffer)."""
        return len(params) == len(self.params) and all(
            a is b and a.shape == v.shape and a.dtype == v.dtype and a.device == v.device
            for a, b, v in zip(params, self.params, self.views, strict=True))

    @torch.no_grad()
    def copy_params(self) -> torch.Tensor:
        """The parameters' current values, copied in; returns the flat vector."""
        torch._foreach_copy_(self.views, self.params)
        return self.flat


class QuadraticPull:
    """Σ_i Ω_i (θ_i − θ*_i)² of a model's parameters and its gradient 2 Ω (θ − θ*), on flat vectors.

    The value is computed without an autograd graph, in buffers allocated once; `add_grad` then
    adds the gradient into every trainable parameter's `.grad` with one foreach call. This costs
    about half the memory traffic of back-propagating the same expression through `torch.cat`.
    """

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.theta, self.half = FlatBuffer(params), FlatBuffer(params)
        self.pending = False

    def holds(self, params: Sequence[torch.Tensor]) -> bool:
        """Whether the buffers were made for exactly these parameters."""
        return self.theta.holds(params)

    @torch.no_grad()
    def value(self, anchor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Σ Ω (θ − θ*)² at the parameters' current values (a constant; its gradient waits for `add_grad`)."""
        if anchor.shape != self.theta.flat.shape or weight.shape != self.theta.flat.shape:
            raise ShapeMismatchError(f"quadratic pull: the model has {self.theta.flat.numel()} parameters but "
                                     f"the anchor has shape {tuple(anchor.shape)} and the weight "
                                     f"{tuple(weight.shape)}; give one flat entry per parameter")
        diff = self.theta.copy_params().sub_(anchor)
        torch.mul(weight, diff, out=self.half.flat)
        self.pending = True
        return torch.dot(self.half.flat, diff)

    @torch.no_grad()
    def add_grad(self, scale: float) -> bool:
        """Add scale · 2 Ω (θ − θ*) (the gradient of scale × the last `value`) to each trainable
        parameter's `.grad`, once per `value` call; whether it added anything."""
        if not self.pending:
            return False
        self.pending = False
        pairs = [(p, v) for p, v in zip(self.half.params, self.half.views, strict=True) if p.requires_grad]
        for p, _ in pairs:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        torch._foreach_add_([p.grad for p, _ in pairs], [v for _, v in pairs], alpha=2.0 * scale)
        return True


def grow_flat(flat: torch.Tensor, old: Sequence[Sequence[int]], new: Sequence[Sequence[int]]) -> torch.Tensor:
    """Re-lay a flat vector (or a (T, P) stack) for parameters that grew from `old` to `new` shapes.

    Old entries keep their place inside each grown parameter; new entries are zero (a growing
    classifier's new units carry no importance yet).
    """
    def grows(a: Sequence[int], b: Sequence[int]) -> bool:
        return len(a) == len(b) and all(i <= j for i, j in zip(a, b, strict=True))

    if len(old) != len(new) or not all(grows(a, b) for a, b in zip(old, new, strict=True)):
        raise ShapeMismatchError(f"parameters changed from shapes {old} to {new}; regularisation "
                                 "state can follow a model only while its parameters grow")
    pieces = flat.split([math.prod(s) for s in old], dim=-1)
    lead = tuple(flat.shape[:-1])
    out = []
    for piece, a, b in zip(pieces, old, new, strict=True):
        grown = flat.new_zeros(*lead, *b)
        grown[(..., *(slice(0, i) for i in a))] = piece.reshape(*lead, *a)
        out.append(grown.reshape(*lead, -1))
    return torch.cat(out, dim=-1)


def call_model(model: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
    """`model`'s outputs with parameters/buffers from `state`; task-conditioned models get `t`."""
    args = (x, t) if getattr(model, "takes_task", False) else (x,)
    return functional_call(model, state, args)


def detached_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached parameters and buffers of `model` by name (no copy), for `call_model`."""
    return {**{n: p.detach() for n, p in model.named_parameters()},
            **{n: b.detach() for n, b in model.named_buffers()}}


def check_samples(x: torch.Tensor, *others: torch.Tensor | None, what: str) -> None:
    """Raise when `x` is empty or the other per-sample tensors do not have one row per input."""
    if x.ndim < 1 or x.shape[0] == 0:
        raise ShapeMismatchError(f"{what}: got no samples (inputs of shape {tuple(x.shape)})")
    for other in others:
        if other is not None and (other.ndim < 1 or other.shape[0] != x.shape[0]):
            raise ShapeMismatchError(f"{what}: inputs hold {x.shape[0]} samples but another "
                                     f"argument has shape {tuple(other.shape)}; give one row per input")


def output_width(model: nn.Module, x: torch.Tensor, t: torch.Tensor, *, what: str) -> int:
    """The number of outputs `model` gives a sample of `x`; a ShapeMismatchError if it fails on `x`."""
    try:
        with torch.no_grad(), evaluating(model):
            out = call_model(model, detached_state(model), x[:1], t[:1])
    except (RuntimeError, IndexError, KeyError, TypeError, ValueError) as err:  # torch's, or a head lookup's
        raise ShapeMismatchError(f"{what}: the model fails on inputs of per-sample shape {tuple(x.shape[1:])} "
                                 f"and dtype {x.dtype} ({err}); give inputs like those it was built for") from err
    return out.shape[-1]


def sample_rows(samples: int | None, generator: torch.Generator,
                *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same random subset of at most `samples` rows of each tensor (drawn from `generator`)."""
    n = tensors[0].shape[0]
    if samples is None or samples >= n:
        return tensors
    idx = torch.randperm(n, generator=generator)[:samples].sort().values.to(tensors[0].device)
    return tuple(v[idx] for v in tensors)
