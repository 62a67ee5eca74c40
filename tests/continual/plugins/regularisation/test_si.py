"""Synaptic Intelligence: the path integral against its closed form on a 1-D quadratic."""

import pytest
import torch
from torch import nn

from lifelong.continual.plugins.si import SI, PathIntegral, si_importance
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError


class Scalar(nn.Module):
    """One parameter θ; the tests write the loss a/2 (θ − b)² by hand."""

    def __init__(self, theta0: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([theta0], dtype=torch.float64))


def _sgd_on_quadratic(plugin, model, ctx, a, b, lr, steps, extra=None):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = a / 2 * (model.theta - b).square().sum()
        if extra is not None:
            loss = loss + sum(extra().values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        plugin.add_grads(ctx, None)
        plugin.observe_grads(ctx, None)
        opt.step()
        plugin.after_step(ctx, None)


def test_si_importance_follows_closed_form_on_quadratic(reg):
    """Plain SGD on L = a/2 (θ − b)²: θ_k − b = r^k d0 with r = 1 − ηa, d0 = θ0 − b.

    g_k = a r^k d0 and Δθ_k = −η g_k, so ω = Σ_k η a² r^{2k} d0² = η a² d0² (1 − r^{2K}) / (1 − r²),
    the total change is d0 (r^K − 1), and Ω = ω / (d0² (r^K − 1)² + ξ).
    """
    a, b, theta0, lr, steps, xi = 2.0, 1.5, -0.5, 0.1, 7, 0.1
    model = Scalar(theta0)
    ctx = reg.context(model, reg.tiny_stream())
    plugin = SI(c=0.5, xi=xi)
    plugin.before_experience(ctx)
    _sgd_on_quadratic(plugin, model, ctx, a, b, lr, steps)
    r, d0 = 1 - lr * a, theta0 - b
    omega = lr * a**2 * d0**2 * (1 - r ** (2 * steps)) / (1 - r**2)
    assert plugin.omega.item() == pytest.approx(omega, rel=1e-12)
    plugin.after_experience(ctx)
    change = d0 * (r**steps - 1)
    assert model.theta.item() == pytest.approx(b + r**steps * d0, rel=1e-12)
    assert plugin.weight.item() == pytest.approx(omega / (change**2 + xi), rel=1e-12)
    assert plugin.anchor.item() == pytest.approx(b + r**steps * d0, rel=1e-12)
    # the penalty c Ω (θ − θ*)²
    with torch.no_grad():
        model.theta.fill_(0.25)
    penalty = plugin.loss_terms(ctx, None, None)["penalty"]
    assert penalty.item() == pytest.approx(0.5 * omega / (change**2 + xi) * (0.25 - plugin.anchor.item()) ** 2)


def test_si_path_uses_gradient_without_its_own_penalty(reg):
    a, b, lr = 2.0, 1.5, 0.1
    model = Scalar(-0.5)
    ctx = reg.context(model, reg.tiny_stream())
    plugin = SI(c=3.0, xi=0.1)
    plugin.before_experience(ctx)
    _sgd_on_quadratic(plugin, model, ctx, a, b, lr, 4)
    plugin.after_experience(ctx)
    omega_first = plugin.weight.clone()

    b2 = -2.0  # a second task pulls θ the other way; SI's penalty resists
    plugin.before_experience(ctx)
    before = model.theta.item()
    _sgd_on_quadratic(plugin, model, ctx, a, b2, lr, 1, extra=lambda: plugin.loss_terms(ctx, None, None))
    step = model.theta.item() - before
    g_task = a * (before - b2)
    g_penalty = 2 * 3.0 * omega_first.item() * (before - plugin.anchor.item())
    assert step == pytest.approx(-lr * (g_task + g_penalty), rel=1e-12)  # the step saw both terms
    assert plugin.omega.item() == pytest.approx(-g_task * step, rel=1e-12)  # ω only the task's


def test_importance_accumulates_over_tasks(reg):
    torch.testing.assert_close(si_importance(torch.tensor([1.0]), torch.tensor([2.0]), 0.5), torch.tensor([1 / 4.5]))

    model = Scalar(0.0)
    ctx = reg.context(model, reg.tiny_stream())
    plugin = SI(xi=0.1)
    totals = []
    for target in (1.0, -1.0):
        plugin.before_experience(ctx)
        _sgd_on_quadratic(plugin, model, ctx, 1.0, target, 0.2, 3)
        totals.append(si_importance(plugin.omega, model.theta.detach() - plugin.start, 0.1))
        plugin.after_experience(ctx)
    torch.testing.assert_close(plugin.weight, totals[0] + totals[1])


def test_aliases_and_config_errors():
    assert [p.name for p in build_strategy("synaptic_intelligence")] == ["si"]
    assert [p.name for p in build_strategy("SI", {"c": 1.0})] == ["si"]
    with pytest.raises(ConfigError, match="xi"):
        SI(xi=0)
    with pytest.raises(ConfigError, match="c must be"):
        SI(c=-0.1)


def test_path_integral_adds_minus_g_times_the_step_from_a_copy_of_g():
    """ω −= g Δθ with g as recorded (a later in-place projection of .grad does not reach it, a
    parameter without a gradient adds nothing) and an optional pull subtracted from g."""
    a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.zeros(3))
    omega = torch.tensor([1.0] * 4 + [2.0] * 3)
    path = PathIntegral(omega, [a, b])
    assert path.holds(omega, [a, b]) and not path.holds(omega.clone(), [a, b]) and not path.holds(omega, [b, a])
    a.grad, b.grad = torch.full((2, 2), 2.0), None  # b: a head the loss did not reach
    path.record()
    a.grad.mul_(0.0)  # e.g. a projection after SI read the gradient
    with torch.no_grad():
        a.add_(0.5)
        b.add_(0.25)
    path.step_taken()
    assert omega.tolist() == [1.0 - 2.0 * 0.5] * 4 + [2.0] * 3
    pull = [torch.full((2, 2), 4.0), torch.full((3,), 8.0)]
    a.grad, b.grad = torch.full((2, 2), 3.0), torch.full((3,), 1.0)
    path.record(pull, alpha=-0.5)  # g = .grad − 0.5 · pull
    with torch.no_grad():
        a.sub_(0.25)
        b.sub_(0.5)
    path.step_taken()
    assert omega.tolist() == [0.0 - (3.0 - 2.0) * -0.25] * 4 + [2.0 - (1.0 - 4.0) * -0.5] * 3
    a.grad = b.grad = None  # a step where no parameter got a gradient adds nothing
    path.record()
    path.step_taken()
    assert omega.tolist() == [0.25] * 4 + [0.5] * 3


def test_si_reads_the_gradient_before_a_projection_whatever_the_order(digits, engine_on):
    """SI's path integral uses the unprojected gradient (`observe_grads`), so listing A-GEM before
    or after it trains the same model (it used to read A-GEM's projection when listed after it)."""
    stream = digits[:3]
    finals = []
    for name in ("si+agem", "agem+si"):
        engine = engine_on(stream, build_strategy(name, {"si": {"c": 1.0}, "agem": {"patterns_per_experience": 20}}))
        engine.run(stream)
        si = next(p for p in engine.plugins if p.name == "si")
        finals.append((si.weight.clone(), [p.detach().clone() for p in engine.model.parameters()]))
    (w1, p1), (w2, p2) = finals
    assert torch.equal(w1, w2) and all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    assert w1.abs().sum() > 0


def test_path_integral_in_float32_matches_the_direct_sum_over_a_real_run(digits, engine_on):
    """On a float32 MLP trained through the engine, ω equals −Σ_k g_k (θ_k+1 − θ_k) summed in
    float64 from copies of θ (the fused form's rounding stays far below ω's scale)."""
    from lifelong.continual.plugin import Plugin

    class Direct(Plugin):
        name = "direct"

        def observe_grads(self, ctx, batch):
            self.g = [p.grad.double().clone() for p in ctx.model.parameters()]
            self.before = [p.detach().double().clone() for p in ctx.model.parameters()]

        def after_step(self, ctx, batch):
            for w, g, b, p in zip(self.omega, self.g, self.before, ctx.model.parameters(), strict=True):
                w -= g * (p.detach().double() - b)

        def after_experience(self, ctx):  # listed first: SI's ω is still there
            self.si_omega = si.omega.clone()

    si, direct = SI(), Direct()
    engine = engine_on(digits[:2], [direct, si])
    engine.lr = 0.01
    direct.omega = [torch.zeros_like(p, dtype=torch.float64) for p in engine.model.parameters()]
    engine.run(digits[:1])
    expected = torch.cat([w.flatten() for w in direct.omega])
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(direct.si_omega.double(), expected, rtol=1e-5, atol=1e-8 * expected.abs().max().item())
