"""ExcessMTL: exponentiated-gradient task weights on excess risks, worked by hand over three steps."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad import ExcessMTL

TINY = 1e-300  # an ε that changes no square root below, so the values are exact


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_three_steps_by_hand() -> None:
    eta = 0.5
    agg = AGGREGATORS.build("ExcessMTL", robust_step_size=eta, eps=TINY)
    # step 1: S = g ⊙ g, e_i = Σ g²/|g| = ‖g_i‖₁ = (7, 2) become the normalisers; weights stay 1
    torch.testing.assert_close(agg(torch.tensor([[3.0, 4.0], [1.0, 1.0]], dtype=torch.float64)), _t(4.0, 5.0))
    torch.testing.assert_close(agg.initial, _t(7.0, 2.0))
    torch.testing.assert_close(agg.last_weights, _t(1.0, 1.0))
    # step 2: S1 = (18, 32), e1 = 9/√18 + 16/√32 = 7/√2; S2 = (5, 5), e2 = 8/√5.
    # Ratios r = (1/√2, 4/√5); w ∝ exp(η r), Σ w = 2.
    a, b = math.exp(eta / math.sqrt(2)), math.exp(eta * 4 / math.sqrt(5))
    w2 = _t(2 * a / (a + b), 2 * b / (a + b))
    out = agg(torch.tensor([[3.0, 4.0], [2.0, 2.0]], dtype=torch.float64))
    torch.testing.assert_close(agg.last_weights, w2)
    torch.testing.assert_close(out, _t(3 * w2[0] + 2 * w2[1], 4 * w2[0] + 2 * w2[1]))
    # step 3: g1 = 0 so e1 = 0; S2 = (6, 6), e2 = 2/√6, r2 = 1/√6; w ∝ w2 ⊙ exp(η r)
    c = w2[1] * math.exp(eta / math.sqrt(6))
    w3 = 2 * torch.stack([w2[0], c]) / (w2[0] + c)
    out = agg(torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(agg.last_weights, w3)
    torch.testing.assert_close(out, _t(w3[1], w3[1]))
    torch.testing.assert_close(agg.sq_sum, torch.tensor([[18.0, 32.0], [6.0, 6.0]], dtype=torch.float64))


def test_a_task_without_gradient_at_first_gets_its_normaliser_later() -> None:
    agg = ExcessMTL(robust_step_size=1.0, eps=TINY)
    agg(torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(agg.initial, _t(3.0, 0.0))
    # step 2: task 1 has S = (2, 8), e1 = 1/√2 + 4/√8 = 3/√2, r1 = 1/√2; task 2 had no normaliser,
    # so r2 = 0 and its estimate e2 = 1 + 1 = 2 becomes its normaliser
    agg(torch.tensor([[1.0, 2.0], [1.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(agg.initial, _t(3.0, 2.0))
    torch.testing.assert_close(agg.last_weights, 2 * torch.softmax(_t(1 / math.sqrt(2), 0.0), 0))


def test_weights_are_positive_sum_to_k_and_ignore_the_scale_of_the_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    Js = [torch.randn(3, 7, generator=gen, dtype=torch.float64) for _ in range(4)]
    a, b = ExcessMTL(robust_step_size=0.5, eps=TINY), ExcessMTL(robust_step_size=0.5, eps=TINY)
    for J in Js:
        torch.testing.assert_close(b(100 * J), 100 * a(J), rtol=1e-12, atol=0)
        torch.testing.assert_close(b.last_weights, a.last_weights, rtol=1e-12, atol=0)
        assert float(a.last_weights.min()) > 0 and float(a.last_weights.sum()) == pytest.approx(3.0, abs=1e-12)
    assert not torch.allclose(a.last_weights, torch.ones(3, dtype=torch.float64))


def test_state_dict_resumes_bit_exactly(resumes) -> None:
    gen = torch.Generator().manual_seed(1)
    state = resumes(lambda: ExcessMTL(robust_step_size=0.5), [(torch.randn(3, 5, generator=gen),) for _ in range(5)])
    assert state["sq_sum"].shape == (3, 5) and state["initial"].shape == state["task_weights"].shape == (3,)


def test_refuses_another_jacobian_shape_and_bad_arguments() -> None:
    agg = ExcessMTL()
    agg(torch.ones(2, 3))
    with pytest.raises(ShapeMismatchError, match=r"shape \(2, 3\) but this Jacobian needs \(2, 4\)"):
        agg(torch.ones(2, 4))
    with pytest.raises(ConfigError, match="robust_step_size must be >= 0 and eps > 0"):
        ExcessMTL(eps=0.0)
