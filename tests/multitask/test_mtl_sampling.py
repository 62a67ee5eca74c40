"""Task samplers against their closed forms, and per-task gradient accumulation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lifelong.core.errors import ConfigError, DataError
from lifelong.multitask.sampling import SAMPLERS, accumulated_gradient, build_sampler

SIZES = [1000, 100, 10]


def test_proportional_is_temperature_one():
    expected = torch.tensor(SIZES, dtype=torch.float64) / sum(SIZES)
    torch.testing.assert_close(build_sampler("proportional", SIZES).probabilities(), expected)
    torch.testing.assert_close(build_sampler("temperature", SIZES, temperature=1.0).probabilities(),
                               expected)


def test_temperature_closed_form_and_limit():
    n = torch.tensor(SIZES, dtype=torch.float64)
    for temp in (2.0, 5.0):
        expected = n ** (1 / temp) / (n ** (1 / temp)).sum()
        torch.testing.assert_close(
            build_sampler("temperature", SIZES, temperature=temp).probabilities(), expected)
    far = build_sampler("temperature", SIZES, temperature=1e9).probabilities()
    torch.testing.assert_close(far, torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(build_sampler("equal", SIZES).probabilities(),
                               torch.full((3,), 1 / 3, dtype=torch.float64))


def test_annealed_moves_the_exponent_linearly_and_reaches_the_end_at_the_last_step():
    """11 steps 0..10: α = 1 − step/10, so the last step (10) is equal sampling (the old divisor,
    total_steps instead of total_steps − 1, stopped short of `end`)."""
    s = build_sampler("annealed", [100, 25], total_steps=11, start=1.0, end=0.0)
    torch.testing.assert_close(s.probabilities(0), torch.tensor([0.8, 0.2], dtype=torch.float64))
    torch.testing.assert_close(s.probabilities(5), torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(s.probabilities(10), torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(s.probabilities(50), s.probabilities(10))
    assert build_sampler("annealed", [100, 25], total_steps=45).exponent(44) == pytest.approx(0.2)


def test_annealed_follows_the_papers_epoch_schedule():
    """Stickland & Murray (2019): α = 1 − 0.8 (e − 1)/(E − 1); E = 3 gives 1.0, 0.6, 0.2, constant
    within each epoch of 15 steps; `total_steps` keeps its per-step schedule over the trainer's."""
    s = build_sampler("annealed", [100, 25])
    with pytest.raises(ConfigError, match="length of the run is unknown"):
        s.exponent(0)
    s.schedule(3, 15)
    assert [s.exponent(step) for step in (0, 14, 15, 29, 30, 44, 60)] == \
        pytest.approx([1.0, 1.0, 0.6, 0.6, 0.2, 0.2, 0.2])
    one = build_sampler("annealed", [100, 25])
    one.schedule(1, 15)
    assert one.exponent(14) == 1.0
    fixed = build_sampler("annealed", [100, 25], total_steps=3)
    fixed.schedule(3, 15)
    assert [fixed.exponent(step) for step in (0, 1, 2)] == pytest.approx([1.0, 0.6, 0.2])


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 10_000), min_size=1, max_size=6),
       temp=st.floats(0.5, 20.0))
def test_probabilities_sum_to_one_and_follow_size(sizes, temp):
    p = build_sampler("temperature", sizes, temperature=temp).probabilities()
    assert abs(float(p.sum()) - 1.0) < 1e-12
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    assert all(p[order[i]] <= p[order[i + 1]] + 1e-15 for i in range(len(sizes) - 1))


def test_draws_follow_the_generator_and_the_probabilities():
    s = build_sampler("temperature", SIZES, temperature=2.0)
    a = s.sample(0, 20_000, torch.Generator().manual_seed(5))
    b = s.sample(0, 20_000, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    freq = torch.bincount(a, minlength=3).double() / 20_000
    assert float((freq - s.probabilities()).abs().max()) < 0.015


def test_bad_sampler_arguments():
    with pytest.raises(DataError, match="positive"):
        build_sampler("equal", [3, 0])
    with pytest.raises(ConfigError, match="temperature"):
        build_sampler("temperature", [3, 4], temperature=0.0)
    with pytest.raises(KeyError, match="proportional"):
        SAMPLERS.get("proportionnal")
    with pytest.raises(ConfigError, match="annealed sampler: start must be finite"):
        build_sampler("annealed", [3, 4], start=float("nan"))
    with pytest.raises(ConfigError, match="total_steps must be a positive integer"):
        build_sampler("annealed", [3, 4], total_steps=0)


@pytest.mark.parametrize("micro", [1, 7, 16, 64])
def test_accumulated_gradient_equals_the_large_batch_gradient(micro):
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    params = list(model.parameters())

    def loss_fn(xb, yb):
        return nn.functional.cross_entropy(model(xb), yb)

    full = loss_fn(x, y)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(full, params)])
    loss, grad = accumulated_gradient(loss_fn, params, x, y, micro)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5)
    assert abs(float(loss) - float(full.detach())) < 1e-6
