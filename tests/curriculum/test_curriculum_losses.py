"""Self-paced selection against its closed form (and brute force); focal loss against hand values."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from lifelong.core.errors import ConfigError, LabelOutOfRangeError, ShapeMismatchError
from lifelong.curriculum.focal import focal_loss
from lifelong.curriculum.self_paced import SelfPaced, self_paced_selection


def test_selection_is_the_closed_form():
    losses = torch.tensor([0.2, 1.5, 0.9, 3.0, 1.0])
    assert self_paced_selection(losses, 1.0).tolist() == [True, False, True, False, False]


@given(losses=st.lists(st.floats(0, 10), min_size=1, max_size=8), lam=st.floats(0.01, 10))
def test_closed_form_minimises_the_spl_objective(losses, lam):
    """min over v ∈ {0,1}^N of Σ v_i·loss_i − λ·Σ v_i (Kumar et al. 2010), by enumeration."""
    values = torch.tensor(losses, dtype=torch.float64)

    def objective(v):
        return float((v * values).sum() - lam * v.sum())

    best = min(objective(torch.tensor(v, dtype=torch.float64))
               for v in itertools.product((0.0, 1.0), repeat=len(losses)))
    assert objective(self_paced_selection(values, lam).double()) == pytest.approx(best, abs=1e-9)


def test_lambda_starts_at_half_and_grows_by_mu():
    spl = SelfPaced()
    losses = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    order = spl.next_order(losses, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]           # below the median 0.55
    assert spl.lam == pytest.approx(0.55 * 1.3)
    order = spl.next_order(losses, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4, 5, 6]     # below 0.715
    spl.reset()
    assert spl.lam is None


def test_fixed_lambda_and_empty_selection_falls_back_to_the_easiest():
    spl = SelfPaced(lam=0.05, mu=2.0)
    assert spl.next_order(torch.tensor([0.3, 0.1, 0.2]), torch.Generator()).tolist() == [1]
    assert spl.lam == pytest.approx(0.1)
    with pytest.raises(ConfigError):
        SelfPaced(mu=0.5)


def test_focal_equals_cross_entropy_at_gamma_zero():
    logits, target = torch.randn(16, 5), torch.randint(0, 5, (16,))
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target))
    assert torch.allclose(focal_loss(logits, target, gamma=0.0, reduction="none"),
                          F.cross_entropy(logits, target, reduction="none"))


def test_focal_hand_value_at_gamma_two():
    # logits [2, 0, 0], target 0: p_t = e²/(e² + 2) = 0.786986; (1 − p_t)² = 0.0453752;
    # −log p_t = 0.2395448; FL = 0.0108693. Logits [0, 1, 0], target 2: p_t = 1/(e + 2) = 0.2119416,
    # (1 − p_t)² = 0.6210361, −log p_t = 1.5514447, FL = 0.9635032.
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 2])
    per_sample = focal_loss(logits, target, reduction="none")
    assert per_sample.tolist() == pytest.approx([0.0108693, 0.9635032], abs=1e-6)
    pt = math.e**2 / (math.e**2 + 2)
    assert float(per_sample[0]) == pytest.approx((1 - pt) ** 2 * -math.log(pt), rel=1e-6)
    assert float(focal_loss(logits, target)) == pytest.approx((0.0108693 + 0.9635032) / 2, abs=1e-6)
    weighted = focal_loss(logits, target, alpha=[0.25, 1.0, 0.5], reduction="sum")
    assert float(weighted) == pytest.approx(0.25 * 0.0108693 + 0.5 * 0.9635032, abs=1e-6)


def test_focal_down_weights_easy_examples_and_has_finite_gradients():
    logits = torch.tensor([[30.0, 0.0], [0.0, 0.0]], requires_grad=True)
    loss = focal_loss(logits, torch.tensor([0, 0]), reduction="none")
    assert float(loss[0].detach()) < 1e-20 < float(loss[1].detach())
    loss.sum().backward()
    assert bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("gamma", [0.1, 0.5, 2.0])
def test_focal_gradient_is_finite_at_a_certain_example_for_every_gamma(gamma):
    """For γ < 1 the derivative of (1 − p_t)^γ is infinite at p_t = 1 and was multiplied by log p_t = 0:
    NaN gradients (training on digits at γ = 0.5 went to NaN weights); the loss's gradient there is 0.
    Elsewhere it is unchanged: it matches the float64 formula's."""
    logits = torch.tensor([[200.0, 0.0, 0.0], [1.0, 2.0, 0.5]], requires_grad=True)
    target = torch.tensor([0, 0])
    focal_loss(logits, target, gamma=gamma, reduction="sum").backward()
    assert torch.isfinite(logits.grad).all() and torch.equal(logits.grad[0], torch.zeros(3))
    ref = logits.detach()[1:].double().requires_grad_(True)
    log_pt = torch.log_softmax(ref, 1)[0, 0]
    (-(1 - log_pt.exp()) ** gamma * log_pt).backward()
    torch.testing.assert_close(logits.grad[1].double(), ref.grad[0], rtol=1e-5, atol=1e-6)


def test_focal_bad_inputs():
    with pytest.raises(ShapeMismatchError):
        focal_loss(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(LabelOutOfRangeError):
        focal_loss(torch.zeros(1, 2), torch.tensor([2]))
    with pytest.raises(ShapeMismatchError, match="alpha"):
        focal_loss(torch.zeros(1, 2), torch.tensor([1]), alpha=[1.0])
    with pytest.raises(ConfigError):
        focal_loss(torch.zeros(1, 2), torch.tensor([1]), reduction="max")
