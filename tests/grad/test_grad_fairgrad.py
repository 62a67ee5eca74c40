"""Nash-MTL and FairGrad: exact fair weights whatever each task's gradient scale."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.core.registries import AGGREGATORS
from lifelong.grad import fair_weights, gramian, nash_mtl_weights

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)
EPSILONS = [1e-3, 1e-5, 1e-8]


def diag_jacobian(*norms: float) -> torch.Tensor:
    """Orthogonal task gradients n_i e_i, with one spare parameter (p = k + 1)."""
    return torch.cat([torch.diag(torch.tensor(norms, dtype=torch.float64)),
                      torch.zeros(len(norms), 1, dtype=torch.float64)], dim=1)


@pytest.mark.parametrize("eps", EPSILONS)
def test_nash_mtl_on_orthogonal_gradients_of_very_different_norms(eps: float) -> None:
    """J = diag(1, ε): G = diag(1, ε²), α_i² G_ii = 1 gives α = (1, 1/ε) and d = (1, 1)."""
    J = diag_jacobian(1.0, eps)
    agg = AGGREGATORS.build("nash_mtl")
    d = agg(J)
    torch.testing.assert_close(agg.last_weights, torch.tensor([1.0, 1 / eps], dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(d, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
@pytest.mark.parametrize("eps", EPSILONS)
def test_fairgrad_closed_form_for_orthogonal_gradients(eps: float, alpha: float) -> None:
    """Orthogonal g_i of norms n_i: G = diag(n_i²), so (G w)_i = w_i^(−1/α) reads n_i² w_i = w_i^(−1/α),
    w_i^((α+1)/α) = n_i^(−2), w_i = n_i^(−2α/(α+1)) = G_ii^(−α/(α+1)), and d = Σ w_i g_i has
    components w_i n_i = n_i^((1−α)/(α+1)). Here n = (1, ε)."""
    J = diag_jacobian(1.0, eps)
    agg = AGGREGATORS.build("fairgrad", alpha=alpha)
    d = agg(J)
    w = torch.tensor([1.0, eps ** (-2 * alpha / (alpha + 1))], dtype=torch.float64)
    torch.testing.assert_close(agg.last_weights, w, rtol=1e-6, atol=0)
    torch.testing.assert_close(d, torch.tensor([1.0, eps ** ((1 - alpha) / (alpha + 1)), 0.0], dtype=torch.float64),
                               rtol=1e-6, atol=0)


@st.composite
def rescaled(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """(J, J with one row times c ∈ [1e-6, 1e6]), J Gaussian with p ≥ k + 1 (independent rows)."""
    k = draw(st.integers(2, 5))
    p = draw(st.integers(k + 1, 8))
    J = torch.randn(k, p, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1))),
                    dtype=torch.float64)
    scaled = J.clone()
    scaled[draw(st.integers(0, k - 1))] *= 10 ** draw(st.floats(-6, 6))
    return J, scaled


@PROPERTY
@given(pair=rescaled())
def test_nash_mtl_direction_ignores_each_tasks_gradient_scale(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    J, scaled = pair
    torch.testing.assert_close(AGGREGATORS.build("nash_mtl")(scaled), AGGREGATORS.build("nash_mtl")(J),
                               rtol=1e-5, atol=0)


@PROPERTY
@given(pair=rescaled(), alpha=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
def test_fair_weights_solve_their_equation_whatever_the_task_scales(pair: tuple[torch.Tensor, torch.Tensor],
                                                                     alpha: float) -> None:
    G = gramian(pair[1])
    w = fair_weights(G, alpha)
    assert float(w.min()) > 0
    torch.testing.assert_close(G @ w, w.pow(-1 / alpha), rtol=1e-5, atol=0)


@pytest.mark.parametrize("scale", [1.0, 1e-6])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_repeated_gradients_still_solve_the_equation(alpha: float, scale: float) -> None:
    # g1 = g2 = (1, 2, 0) (G singular), the copy possibly scaled, g3 = (0, 1, 1)
    J = torch.tensor([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    J[1] *= scale
    agg = AGGREGATORS.build("fairgrad", alpha=alpha)
    d = agg(J)
    w = agg.last_weights
    assert torch.isfinite(d).all() and float(w.min()) > 0
    torch.testing.assert_close(J @ d, w.pow(-1 / alpha), rtol=1e-6, atol=0)
    if alpha == 1:  # Nash-MTL: ‖d‖² = Σ α_i ⟨d, g_i⟩ = k, and the copy's scale does not matter
        assert float(d.norm()) == pytest.approx(3**0.5, rel=1e-6)
        torch.testing.assert_close(d, AGGREGATORS.build("nash_mtl")(J / J.norm(dim=1, keepdim=True)))


def test_opposite_gradients_have_no_solution_but_a_finite_answer() -> None:
    # g1 = −g2: no d improves both. With the ridge, α1 = α2 = a solves a(1 + 1e-8) − a = 1/a, so
    # a = 1e4 and their terms cancel; d improves g3 alone, for which the claims hold (α3 = 1/‖g3‖).
    J = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1e-3]], dtype=torch.float64)
    agg = AGGREGATORS.build("nash_mtl")
    d = agg(J)
    torch.testing.assert_close(d, torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-7)
    torch.testing.assert_close(agg.last_weights, torch.tensor([1e4, 1e4, 1e3], dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_a_zero_gradient_gets_weight_zero_and_leaves_the_others_alone(alpha: float) -> None:
    J = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    w = fair_weights(gramian(J), alpha)
    assert float(w[1]) == 0
    torch.testing.assert_close(w[[0, 2]], fair_weights(gramian(J[[0, 2]]), alpha), rtol=0, atol=0)
    assert torch.equal(fair_weights(torch.zeros(3, 3, dtype=torch.float64), alpha), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(AGGREGATORS.build("fairgrad", alpha=alpha)(torch.zeros(2, 4)), torch.zeros(4))


def test_nash_mtl_is_fairgrad_with_alpha_one() -> None:
    """α = 1 is the Nash bargaining condition α_i (G α)_i = 1 (Navon et al. 2022, Eq. 3), also for a
    task whose gradient is 10⁴ times smaller (up to the 1e-8 relative ridge)."""
    G = gramian(torch.tensor([[1.0, 0.0, 2.0], [-2.0, 1.0, 0.0], [0.0, 1e-4, 0.0]], dtype=torch.float64))
    alpha = nash_mtl_weights(G)
    torch.testing.assert_close(alpha * (G @ alpha), torch.ones(3, dtype=torch.float64), rtol=1e-6, atol=0)
    assert torch.equal(alpha, fair_weights(G, 1.0))
