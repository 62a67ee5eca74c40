"""FAMO: the first step's objective and weights, one logit update by hand, Adam, state, errors."""

from __future__ import annotations

import io
import math

import pytest
import torch

from lifelong.core.errors import ConfigError, DataError, IncompatibleError, NonFiniteLossError, ShapeMismatchError
from lifelong.multitask.weighting import FAMO, build_weighting
from lifelong.multitask.weighting.famo import famo_logit_update


def test_first_step_objective_and_weights(total_and_grad) -> None:
    # ξ = 0: z = (½, ½); L = (2, 1), b = 0: c = ½/2 + ½/1 = ¾, total = (½ log 2 + ½ log 1)/¾ = ⅔ log 2,
    # weights z_t/(c L_t) = (¼, ½)/¾ = (⅓, ⅔): the gradient of the mean log-loss, normalised to sum 1.
    famo = FAMO(2)
    total, grad = total_and_grad(famo, [2.0, 1.0])
    assert total == pytest.approx(2 / 3 * math.log(2), rel=1e-7)
    torch.testing.assert_close(grad, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(famo.weights, torch.tensor([1 / 3, 2 / 3]))
    # lower bounds b = (1, 0): D = (1, 1), so log D = 0 and the weights are z = (½, ½)
    total, grad = total_and_grad(FAMO(2, lower_bounds=[1.0, 0.0]), [2.0, 1.0])
    assert abs(total) < 1e-7
    torch.testing.assert_close(grad, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_one_logit_update_by_hand() -> None:
    # Before (2, 1), after (1, 0.8): δ = (log 2, log 1.25). At ξ = 0, z = (½, ½) and
    # ∇_ξ zᵀδ = z ⊙ (δ − zᵀδ) = ±¼ log(2/1.25) = ±¼ log 1.6; γξ = 0. Adam's first step has
    # m̂ = g, v̂ = g², so ξ moves by −lr · g/(|g| + 1e-8) ≈ −0.025 · sign(g): ξ = (−0.025, 0.025).
    famo = FAMO(2)  # w_lr = 0.025, γ = 1e-3
    famo.combine(torch.tensor([2.0, 1.0]))
    famo.after_step(torch.tensor([1.0, 0.8]))
    g = 0.25 * math.log(1.6)
    step = 0.025 * g / (g + 1e-8)
    torch.testing.assert_close(famo.logits, torch.tensor([-step, step], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(famo.exp_avg, torch.tensor([0.1 * g, -0.1 * g], dtype=torch.float64))
    torch.testing.assert_close(famo.exp_avg_sq, torch.full((2,), 0.001 * g * g, dtype=torch.float64))
    assert int(famo.adam_steps) == 1
    # task 1's loss fell less (×0.8 against ×0.5), so it gains weight: z = softmax(∓0.025)
    z1 = 1 / (1 + math.exp(-2 * step))
    famo.combine(torch.tensor([1.0, 1.0]))  # equal losses: the weights are z itself
    torch.testing.assert_close(famo.weights, torch.tensor([1 - z1, z1]))
    assert z1 > 0.5


def test_the_slower_task_keeps_gaining_weight() -> None:
    famo = FAMO(3)
    seen = []
    for _ in range(20):  # each step task 0 halves, task 1 drops 20 %, task 2 drops 5 %
        famo.combine(torch.tensor([2.0, 1.0, 1.0]))
        famo.after_step(torch.tensor([1.0, 0.8, 0.95]))
        seen.append(torch.softmax(famo.logits, 0))
    z = torch.stack(seen)
    assert bool((z[1:, 2] > z[:-1, 2]).all()) and bool((z[1:, 0] < z[:-1, 0]).all())
    assert float(z[-1, 2]) > float(z[-1, 1]) > float(z[-1, 0])


def test_the_inner_step_is_adam_with_weight_decay() -> None:
    # torch.optim.Adam(weight_decay=γ) on the gradient of softmax(ξ)ᵀδ, step after step
    gen = torch.Generator().manual_seed(0)
    xi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([xi], lr=0.025, weight_decay=0.01)
    logits, m, v = torch.zeros(3, 3, dtype=torch.float64)  # ξ and Adam's two moments
    for step in range(1, 8):
        delta = torch.randn(3, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        (torch.softmax(xi, 0) @ delta).backward()
        opt.step()
        logits, m, v = famo_logit_update(logits, delta, m, v, step, lr=0.025, gamma=0.01)
        torch.testing.assert_close(logits, xi.detach(), rtol=1e-12, atol=1e-15)


def test_state_dict_resumes_bit_exactly() -> None:
    def run(famo: FAMO, steps: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        out = []
        for before, after in steps:
            out.append(famo.combine(before).detach())
            out.append(famo.weights.clone())
            famo.after_step(after)
        return out

    gen = torch.Generator().manual_seed(1)
    steps = [(torch.rand(3, generator=gen) + 0.5, torch.rand(3, generator=gen) + 0.2) for _ in range(6)]
    first = FAMO(3, gamma=0.01)
    run(first, steps[:3])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = FAMO(3, gamma=0.01)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    expected = run(first, steps[3:])
    for got, want in zip(run(second, steps[3:]), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # negative control: a FAMO that did not load the state weighs the same losses differently
    assert not torch.equal(run(FAMO(3, gamma=0.01), steps[3:])[1], expected[1])


def test_resume_between_combine_and_after_step() -> None:
    famo = FAMO(2)
    famo.combine(torch.tensor([2.0, 1.0]))
    resumed = FAMO(2)
    resumed.load_state_dict(famo.state_dict())  # the last losses travel with the state
    for w in (famo, resumed):
        w.after_step(torch.tensor([1.0, 0.8]))
    torch.testing.assert_close(resumed.logits, famo.logits, rtol=0, atol=0)


def test_the_logits_are_not_parameters() -> None:
    famo = build_weighting("FAMO", 3)
    assert famo.needs_losses_after_step and list(famo.parameters()) == []
    assert {"logits", "exp_avg", "exp_avg_sq", "adam_steps", "last_losses"} <= set(famo.state_dict())
    assert (famo.w_lr, famo.gamma) == (0.025, 1e-3)


def test_errors() -> None:
    famo = FAMO(2)
    with pytest.raises(IncompatibleError, match="call combine"):
        famo.after_step(torch.tensor([1.0, 1.0]))
    famo.combine(torch.tensor([2.0, 1.0]))
    with pytest.raises(ShapeMismatchError, match=r"vector of 2 task losses, got shape \(3,\)"):
        famo.after_step(torch.ones(3))
    with pytest.raises(NonFiniteLossError, match="not all finite"):
        famo.after_step(torch.tensor([1.0, float("nan")]))
    famo.after_step(torch.tensor([1.0, 0.8]))
    with pytest.raises(IncompatibleError, match="call combine"):  # one update per combine
        famo.after_step(torch.tensor([1.0, 0.8]))
    bounded = FAMO(2, lower_bounds=[0.5, 0.0])
    with pytest.raises(DataError, match="above their lower bounds"):
        bounded.combine(torch.tensor([0.4, 1.0]))
    bounded.combine(torch.tensor([0.6, 1.0]))
    with pytest.raises(DataError, match="above their lower bounds"):
        bounded.after_step(torch.tensor([0.3, 1.0]))
    with pytest.raises(ConfigError, match=r"w_lr .* must be a finite number > 0"):
        FAMO(2, w_lr=0.0)
    with pytest.raises(ConfigError, match=r"gamma .* must be a finite number ≥ 0"):
        FAMO(2, gamma=-1.0)
    with pytest.raises(ConfigError, match="lower_bounds must be 2 finite numbers"):
        FAMO(2, lower_bounds=[0.0])
