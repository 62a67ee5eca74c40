"""Loss-based weightings: hand-computed values, the behaviour each paper claims, input errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lifelong.core.errors import ConfigError, DataError, IncompatibleError, NonFiniteLossError, ShapeMismatchError
from lifelong.core.registries import WEIGHTINGS
from lifelong.grad import jacobian
from lifelong.multitask.weighting import DWA, GLS, IMTLL, RLW, GradNorm, Uncertainty, build_weighting

LOSS_BASED = [n for n in WEIGHTINGS.names() if WEIGHTINGS.meta(n)["kind"] == "loss"]


def test_uniform_is_the_sum() -> None:
    w = build_weighting("EW", 3)
    losses = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    assert float(w.combine(losses).detach()) == 7.0
    torch.testing.assert_close(w.weights, torch.ones(3))


def test_uncertainty_hand_values_for_both_task_types() -> None:
    uw = Uncertainty(2, task_types=["regression", "classification"])
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))  # σ² = 1 and 4
    losses = torch.tensor([1.0, 2.0])
    # regression 1/(2σ²) L + log σ = ½·1 + 0; classification 1/σ² L + log σ = ¼·2 + log 2
    assert float(uw.combine(losses).detach()) == pytest.approx(0.5 + 0.5 + math.log(2.0))
    torch.testing.assert_close(uw.weights, torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(uw.sigma, torch.tensor([1.0, 2.0]))


def test_uncertainty_recovers_the_noise_ratio_of_two_regression_tasks() -> None:
    # y_t = x·a_t + ε_t with std(ε) = 1 and 3: at the optimum σ_t² = MSE_t, so σ₂/σ₁ → 3.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 8, generator=gen)
    a = torch.randn(8, 2, generator=gen)
    y = x @ a + torch.randn(4000, 2, generator=gen) * torch.tensor([1.0, 3.0])
    model = nn.Linear(8, 2)
    uw = build_weighting("UW", 2)
    opt = torch.optim.SGD([*model.parameters(), *uw.parameters()], lr=0.05)
    for step in range(600):
        idx = torch.randint(0, 4000, (256,), generator=gen)
        losses = ((model(x[idx]) - y[idx]) ** 2).mean(0)
        opt.zero_grad()
        uw.combine(losses, step=step).backward()
        opt.step()
    sigma = uw.sigma
    assert float(sigma[1] / sigma[0]) == pytest.approx(3.0, rel=0.08)
    assert float(sigma[0]) == pytest.approx(1.0, rel=0.1)


def test_dwa_follows_its_formula_on_a_hand_history() -> None:
    dwa = DWA(2)  # T = 2
    losses = torch.tensor([3.0, 5.0])
    assert float(dwa.combine(losses)) == 8.0  # epochs 1 and 2: weights 1
    dwa.end_epoch(torch.tensor([1.0, 2.0]))
    assert float(dwa.combine(losses)) == 8.0
    dwa.end_epoch(torch.tensor([0.5, 1.8]))
    # r = (0.5/1, 1.8/2) = (0.5, 0.9); w = 2 e^{r/2} / Σ e^{r/2} = 2·(1.284025, 1.568312)/2.852337
    dwa.combine(losses)
    torch.testing.assert_close(dwa.weights, torch.tensor([0.9003312, 1.0996688]))
    dwa.end_epoch(torch.tensor([0.4, 0.9]))
    # r = (0.4/0.5, 0.9/1.8) = (0.8, 0.5); w = 2·(e^0.4, e^0.25)/(e^0.4 + e^0.25)
    total = dwa.combine(losses)
    torch.testing.assert_close(dwa.weights, torch.tensor([1.0748596, 0.9251404]))
    assert float(total) == pytest.approx(3 * 1.0748596 + 5 * 0.9251404, rel=1e-6)
    fresh = DWA(2)
    fresh.load_state_dict(dwa.state_dict())
    fresh.combine(losses)
    torch.testing.assert_close(fresh.weights, dwa.weights)


def test_gradnorm_balances_the_gradient_norms_of_scaled_tasks() -> None:
    # Two identical tasks, the second loss ×10: its gradient is 10× larger, so equal weighted
    # norms w₁n₁ = w₂n₂ with w₁ + w₂ = 2 need w = (20/11, 2/11), a 10:1 ratio.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 6, generator=gen)
    y = x @ torch.randn(6, 1, generator=gen) + 0.5 * torch.randn(1024, 1, generator=gen)
    shared = nn.Sequential(nn.Linear(6, 16), nn.Tanh())
    head = nn.Linear(16, 1)
    gn = build_weighting("GradNorm", 2)  # α = 1.5
    opt = torch.optim.SGD([*shared.parameters(), *head.parameters()], lr=0.01)
    opt_w = torch.optim.Adam(gn.parameters(), lr=0.02)
    last = list(shared[0].parameters())
    for step in range(400):
        idx = torch.randint(0, 1024, (128,), generator=gen)
        mse = ((head(shared(x[idx])) - y[idx]) ** 2).mean()
        losses = torch.stack([mse, 10 * mse])
        opt.zero_grad()
        opt_w.zero_grad()
        gn.combine(losses, shared=last, step=step).backward()
        opt.step()
        opt_w.step()
    w = gn.weights
    assert float(w.sum()) == pytest.approx(2.0, rel=1e-5)
    assert float(w[0] / w[1]) == pytest.approx(10.0, rel=0.1)
    mse = ((head(shared(x)) - y) ** 2).mean()
    norms = jacobian(torch.stack([mse, 10 * mse]), last).norm(dim=1)
    weighted = w * norms
    assert float(weighted[0] / weighted[1]) == pytest.approx(1.0, rel=0.15)


def test_gradnorm_needs_the_shared_parameters() -> None:
    with pytest.raises(IncompatibleError, match="shared="):
        GradNorm(2).combine(torch.tensor([1.0, 2.0], requires_grad=True))


def test_rlw_draws_simplex_weights_from_its_generator() -> None:
    a, b = RLW(3, torch.Generator().manual_seed(5)), RLW(3, torch.Generator().manual_seed(5))
    losses = torch.tensor([1.0, 2.0, 3.0])
    seen = []
    for _ in range(50):
        total = a.combine(losses)
        b.combine(losses)
        torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
        assert float(a.weights.min()) > 0 and float(a.weights.sum()) == pytest.approx(1.0)
        assert float(total) == pytest.approx(float(a.weights @ losses))
        seen.append(a.weights)
    assert float(torch.stack(seen).std(0).min()) > 0.05


def test_imtl_l_scales_every_loss_to_one() -> None:
    imtl = IMTLL(2)
    opt = torch.optim.SGD(imtl.parameters(), lr=0.1)
    losses = torch.tensor([2.0, 0.5])
    for _ in range(300):
        opt.zero_grad()
        imtl.combine(losses).backward()
        opt.step()
    # minimum of e^s L − s at e^s = 1/L: s = (−log 2, log 2)
    torch.testing.assert_close(imtl.log_scale.detach(), torch.tensor([-math.log(2), math.log(2)]), atol=1e-3, rtol=0)
    torch.testing.assert_close(imtl.weights * losses, torch.ones(2), atol=2e-3, rtol=0)


def test_gls_is_the_geometric_mean() -> None:
    gls = GLS(2)
    losses = torch.tensor([1.0, 4.0], requires_grad=True)
    total = gls.combine(losses)
    assert float(total.detach()) == pytest.approx(2.0)  # √(1·4)
    (grad,) = torch.autograd.grad(total, losses)
    torch.testing.assert_close(grad, torch.tensor([1.0, 0.25]))  # L/(k L_t)
    torch.testing.assert_close(gls.weights, grad)
    with pytest.raises(DataError, match="positive losses"):
        gls.combine(torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("name", LOSS_BASED)
def test_combine_never_calls_backward(name: str) -> None:
    shared = nn.Linear(3, 2)
    losses = (shared(torch.ones(4, 3)) ** 2).mean(0) + 0.1
    weighting = build_weighting(name, 2)
    total = weighting.combine(losses, shared=list(shared.parameters()))
    assert total.dim() == 0 and total.requires_grad
    assert all(p.grad is None for p in [*shared.parameters(), *weighting.parameters()])


@pytest.mark.parametrize("name", LOSS_BASED)
def test_combine_validates_the_losses(name: str) -> None:
    weighting = build_weighting(name, 2)
    with pytest.raises(ShapeMismatchError, match=r"vector of 2 task losses, got shape \(3,\)"):
        weighting.combine(torch.ones(3))
    with pytest.raises(NonFiniteLossError, match=r"tasks \[1\]"):
        weighting.combine(torch.tensor([1.0, float("inf")]))


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="task_types"):
        build_weighting("uncertainty", 2, task_types=["regression", "ranking"])
    with pytest.raises(ConfigError, match="n_tasks must be a positive integer"):
        build_weighting("dwa", 0)
    with pytest.raises(ConfigError, match=r"unknown keys \['T'\]"):
        build_weighting("dwa", 2, T=2.0)


def subset_total_and_grad(weighting: nn.Module, losses: list[float], present: list[bool]) -> tuple[float, torch.Tensor]:
    """The total of the `present` tasks alone and its gradient in all the losses (float64)."""
    leaf = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    total = weighting.combine(leaf, present=torch.tensor(present))
    (grad,) = torch.autograd.grad(total, leaf)
    return float(total.detach()), grad


DRAWN = [True, False, True]


def test_a_subset_of_tasks_is_weighed_alone_by_hand() -> None:
    """A sampler drew tasks 0 and 2; task 1's loss (NaN: not measured) is ignored, weight 0."""
    total, grad = subset_total_and_grad(build_weighting("uniform", 3), [1.0, float("nan"), 4.0], DRAWN)
    assert total == 5.0
    torch.testing.assert_close(grad, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    gls = GLS(3)
    total, grad = subset_total_and_grad(gls, [1.0, 0.0, 4.0], DRAWN)  # √(1·4); the 0 is not drawn
    assert total == pytest.approx(2.0)
    torch.testing.assert_close(grad, torch.tensor([1.0, 0.0, 0.25], dtype=torch.float64))
    torch.testing.assert_close(gls.weights, torch.tensor([1.0, 0.0, 0.25]))
    stch = build_weighting("stch", 3)  # warm-up: Σ_drawn log L_t
    total, grad = subset_total_and_grad(stch, [1.0, 7.0, math.e], DRAWN)
    assert total == pytest.approx(1.0)
    torch.testing.assert_close(grad, torch.tensor([1.0, 0.0, 1 / math.e], dtype=torch.float64))


def test_a_subset_leaves_the_undrawn_tasks_learned_parameters_without_gradient() -> None:
    """Uncertainty (regression, s = 0): ½ e^{-s_0}·3 + ½ s_0 → ∂/∂s_0 = −1.5 + 0.5 = −1 and no
    ½ s_1 term; IMTL-L (s = 0): e^{s_0}·3 − s_0 → ∂/∂s_0 = 3 − 1 = 2, task 1 untouched."""
    uw = Uncertainty(2)
    total = uw.combine(torch.tensor([3.0, 0.0]), present=torch.tensor([True, False]))
    assert float(total.detach()) == pytest.approx(1.5)
    (grad,) = torch.autograd.grad(total, uw.log_var)
    torch.testing.assert_close(grad, torch.tensor([-1.0, 0.0]))
    torch.testing.assert_close(uw.weights, torch.tensor([0.5, 0.0]))
    imtl = IMTLL(2)
    total = imtl.combine(torch.tensor([3.0, 0.0]), present=torch.tensor([True, False]))
    (grad,) = torch.autograd.grad(total, imtl.log_scale)
    torch.testing.assert_close(grad, torch.tensor([2.0, 0.0]))


def test_rlw_renormalises_its_draw_over_the_drawn_tasks() -> None:
    full, some = RLW(3, torch.Generator().manual_seed(5)), RLW(3, torch.Generator().manual_seed(5))
    losses = torch.tensor([1.0, 2.0, 3.0])
    full.combine(losses)
    some.combine(losses, present=torch.tensor(DRAWN))
    w = full.weights
    expected = torch.stack([w[0], torch.tensor(0.0), w[2]]) / (w[0] + w[2])
    torch.testing.assert_close(some.weights, expected)
    torch.testing.assert_close(full.rng.generator.get_state(), some.rng.generator.get_state())


def test_dwa_weighs_the_drawn_tasks_and_takes_rate_one_for_an_epoch_without_draws() -> None:
    dwa = DWA(2)
    dwa.end_epoch(torch.tensor([2.0, 4.0]))
    dwa.end_epoch(torch.tensor([1.0, float("nan")]))  # task 1 never drawn in the second epoch
    # r = (1/2, 1); w = 2·(e^0.25, e^0.5)/(e^0.25 + e^0.5)
    dwa.combine(torch.tensor([3.0, 5.0]))
    torch.testing.assert_close(dwa.weights, torch.tensor([0.8756466, 1.1243534]))
    total = dwa.combine(torch.tensor([3.0, 5.0]), present=torch.tensor([False, True]))
    assert float(total) == pytest.approx(5 * 1.1243534, rel=1e-6)
    torch.testing.assert_close(dwa.weights, torch.tensor([0.0, 1.1243534]))


@pytest.mark.parametrize("name", LOSS_BASED)
def test_weightings_without_subsets_refuse_them_and_present_is_checked(name: str) -> None:
    weighting = build_weighting(name, 2)
    with pytest.raises(ShapeMismatchError, match="bool mask of the 2 tasks selecting at least one"):
        weighting.combine(torch.ones(2), present=torch.tensor([False, False]))
    if not weighting.weighs_subsets:
        with pytest.raises(IncompatibleError, match="cannot weigh the few a task sampler draws"):
            weighting.combine(torch.ones(2), present=torch.tensor([True, False]))
