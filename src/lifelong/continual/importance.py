"""What the regularisation strategies share: flat parameter vectors, the quadratic penalty
Σ_i Ω_i (θ_i − θ*_i)², and per-sample gradient statistics through torch.func.

EWC's Fisher (Kirkpatrick et al. 2017) and MAS's sensitivity (Aljundi et al. 2018) are both a
mean over samples of an elementwise transform of a per-sample gradient; EWC, online EWC, SI and
MAS all penalise with the same weighted squared distance to an anchor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from lifelong.core.checks import check_count
from lifelong.core.errors import IncompatibleError, ShapeMismatchError
from lifelong.models.layer_list import evaluating

Objective = Callable[..., torch.Tensor]


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
    except RuntimeError as err:
        raise ShapeMismatchError(f"{what}: the model fails on inputs of per-sample shape {tuple(x.shape[1:])} "
                                 f"and dtype {x.dtype} ({err}); give inputs like those it was built for") from err
    return out.shape[-1]


# transforms f with f(g aᵀ) = f(g) f(a)ᵀ for an outer product (each maps to its out-of-place form)
OUTER_PRODUCT_TRANSFORMS: dict[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]] = {
    torch.Tensor.square_: torch.square, torch.Tensor.square: torch.square, torch.square: torch.square,
    torch.Tensor.abs_: torch.abs, torch.Tensor.abs: torch.abs, torch.abs: torch.abs,
}
LINEAR_ROWS = 1024  # samples per forward/backward pass of `linear_per_sample_mean`


def linear_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The model's plain `nn.Linear` layers (no overridden forward, no shared weight) when they
    hold every parameter, else None."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    owned = [id(p) for m in layers for p in (m.weight, m.bias) if p is not None]
    plain = all(type(m).forward is nn.Linear.forward for m in layers)
    if not layers or not plain or len(set(owned)) != len(owned) or \
            any(id(p) not in set(owned) for p in model.parameters()):
        return None
    return layers


def _agrees(outer: torch.Tensor, reference: torch.Tensor | None) -> bool:
    """Whether a layer's Gᵀ A (or G's column sums) equals autograd's gradient of its parameter."""
    reference = torch.zeros_like(outer) if reference is None else reference
    return torch.allclose(outer, reference, rtol=1e-4, atol=1e-6 * (1 + float(reference.abs().max())))


def linear_per_sample_mean(model: nn.Module, objective: Objective, x: torch.Tensor, t: torch.Tensor,
                           *extra: torch.Tensor,
                           transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
    """`per_sample_mean` without per-sample gradients, for models made of `nn.Linear` layers.

    A layer applied once to (N, features) inputs a_n with output gradients g_n has per-sample
    weight gradients g_n a_nᵀ, so Σ_n f(g_n a_nᵀ) = f(G)ᵀ f(A) for f = square or abs: one matrix
    product per layer from one ordinary backward pass (Goodfellow 2015, "Efficient per-example
    gradient computations"). Every chunk checks that Gᵀ A and G's column sums equal the ordinary
    batch gradient, so a weight used outside its layer call is caught. Returns None (the caller
    takes vmap) when the model or `transform` does not qualify or the check fails.
    """
    layers, f = linear_layers(model), OUTER_PRODUCT_TRANSFORMS.get(transform)
    if layers is None or f is None:
        return None
    seen: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def record(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        seen.setdefault(m, []).append((inputs[0].detach().clone(), out))
        return out.clone()  # an in-place op downstream (ReLU(inplace=True)) must not change `out`

    handles = [m.register_forward_hook(record) for m in layers]
    per_sample_loss = vmap(lambda o, ti, *ei: objective(o[None], ti[None], *(e[None] for e in ei)))
    names = [n for n, _ in model.named_parameters()]
    sums = {p: torch.zeros_like(p) for p in model.parameters()}
    try:
        with evaluating(model), torch.enable_grad():
            for s in range(0, x.shape[0], LINEAR_ROWS):
                seen.clear()
                state = detached_state(model)
                params = [state[n].requires_grad_() for n in names]
                xs, ts = x[s:s + LINEAR_ROWS], t[s:s + LINEAR_ROWS]
                out = call_model(model, state, xs, ts)
                calls = [seen.get(m, []) for m in layers]
                if any(len(c) != 1 or c[0][0].shape != (len(xs), m.in_features)
                       for c, m in zip(calls, layers, strict=True)):
                    return None
                losses = per_sample_loss(out, ts, *(e[s:s + LINEAR_ROWS] for e in extra))
                grads = torch.autograd.grad(losses.sum(), [c[0][1] for c in calls] + params, allow_unused=True)
                batch = dict(zip(sums, grads[len(layers):], strict=True))  # the ordinary batch gradient
                for m, ((a, o),), g in zip(layers, calls, grads[:len(layers)], strict=True):
                    g = torch.zeros_like(o) if g is None else g
                    pairs = [(m.weight, g.T @ a, f(g).T @ f(a))]
                    if m.bias is not None:
                        pairs.append((m.bias, g.sum(0), f(g).sum(0)))
                    for p, outer, term in pairs:
                        if not _agrees(outer, batch[p]):
                            return None
                        sums[p] += term
    finally:
        for h in handles:
            h.remove()
    return torch.cat([v.reshape(-1) for v in sums.values()]) / x.shape[0]


def per_sample_mean(model: nn.Module, objective: Objective, x: torch.Tensor,
                    t: torch.Tensor | None = None, *extra: torch.Tensor,
                    transform: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.square_,
                    chunk_size: int = 16) -> torch.Tensor:
    """(1/N) Σ_n transform(∇_θ objective(f_θ(x_n), t_n, *extra_n)) as one flat vector.

    `objective(outputs, t, *extra)` sees one sample as a batch of one. Models made of Linear
    layers with `transform` square or abs take `linear_per_sample_mean` (no per-sample gradient
    is formed); otherwise per-sample gradients come from `vmap(grad(...))` over
    `functional_call`, `chunk_size` samples at a time (memory: chunk_size × parameters). The model
    runs in eval mode (no dropout, BatchNorm statistics frozen). `transform` may work in place.
    """
    what = "per-sample gradients"
    check_count(f"{what}: chunk_size", chunk_size)
    t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if t is None else t
    check_samples(x, t, *extra, what=what)
    params = {n: p.detach() for n, p in model.named_parameters()}
    if not params:
        raise IncompatibleError(f"{what}: the model has no parameters to take gradients of; "
                                "give a model with parameters")
    output_width(model, x, t, what=what)
    fast = linear_per_sample_mean(model, objective, x, t, *extra, transform=transform)
    if fast is not None:
        return fast
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, ti: torch.Tensor,
            *ei: torch.Tensor) -> torch.Tensor:
        out = call_model(model, {**p, **buffers}, xi[None], ti[None])
        return objective(out, ti[None], *(e[None] for e in ei))

    per_sample = vmap(grad(one), in_dims=(None, 0, 0, *(0,) * len(extra)))
    total = next(iter(params.values())).new_zeros(sum(p.numel() for p in params.values()))
    with evaluating(model):
        for s in range(0, x.shape[0], chunk_size):
            grads = per_sample(params, x[s:s + chunk_size], t[s:s + chunk_size],
                               *(e[s:s + chunk_size] for e in extra))
            total += torch.cat([transform(grads[n]).sum(0).reshape(-1) for n in params])
    return total / x.shape[0]


def sample_rows(samples: int | None, generator: torch.Generator,
                *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same random subset of at most `samples` rows of each tensor (drawn from `generator`)."""
    n = tensors[0].shape[0]
    if samples is None or samples >= n:
        return tensors
    idx = torch.randperm(n, generator=generator)[:samples].sort().values.to(tensors[0].device)
    return tuple(v[idx] for v in tensors)
