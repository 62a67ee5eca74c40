"""Means over samples of a transform of per-sample gradients: EWC's Fisher (Kirkpatrick et al.
2017) and MAS's sensitivity (Aljundi et al. 2018) — by one matrix product per layer for models
made of Linear layers, by `vmap(grad)` otherwise."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import grad, vmap

from lifelong.continual.importance import call_model, check_samples, detached_state, output_width
from lifelong.core.checks import check_count
from lifelong.core.errors import IncompatibleError
from lifelong.models.layer_list import evaluating

Objective = Callable[..., torch.Tensor]

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


def _agrees(expected: torch.Tensor, reference: torch.Tensor | None, probe: torch.Tensor | None = None) -> bool:
    """Whether autograd's gradient of a parameter equals `expected` (G's column sums), or with a
    `probe` v, whether its product with v equals `expected` = Gᵀ (A v): Freivalds' check of the
    weight gradient Gᵀ A without forming it (a random v exposes any difference almost surely)."""
    if reference is None:  # the parameter got no gradient
        got = torch.zeros_like(expected)
    else:
        got = reference if probe is None else reference @ probe
    return torch.allclose(got, expected, rtol=1e-4, atol=1e-6 * (1 + float(got.abs().max())))


def linear_per_sample_mean(model: nn.Module, objective: Objective, x: torch.Tensor, t: torch.Tensor,
                           *extra: torch.Tensor,
                           transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
    """`per_sample_mean` without per-sample gradients, for models made of `nn.Linear` layers.

    A layer applied once to (N, features) inputs a_n with output gradients g_n has per-sample
    weight gradients g_n a_nᵀ, so Σ_n f(g_n a_nᵀ) = f(G)ᵀ f(A) for f = square or abs: one matrix
    product per layer from one ordinary backward pass (Goodfellow 2015, "Efficient per-example
    gradient computations"). Every chunk checks that Gᵀ A (by Freivalds' random-vector product)
    and G's column sums equal the ordinary batch gradient, so a weight used outside its layer call
    is caught. Returns None (the caller takes vmap) when the model or `transform` does not qualify
    or the check fails.
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
                    probe = torch.randn(m.in_features, generator=torch.Generator().manual_seed(0),
                                        dtype=a.dtype).to(a.device)
                    if not _agrees(g.T @ (a @ probe), batch[m.weight], probe):
                        return None
                    sums[m.weight] += f(g).T @ f(a)
                    if m.bias is not None:
                        if not _agrees(g.sum(0), batch[m.bias]):
                            return None
                        sums[m.bias] += f(g).sum(0)
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
