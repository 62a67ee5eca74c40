"""Stochastic and stateful aggregators: generators, state_dict round trips, sampling frequencies."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.registries import AGGREGATORS
from lifelong.grad import MGDA, RGW, GradDrop, GradVac, PCGrad

# Three tasks where the order of PCGrad's projections matters (g1 conflicts with g2 and g3).
ORDERED = torch.tensor([[1.0, 0.0], [-0.9, 0.1], [-0.9, -0.1]], dtype=torch.float64)
STOCHASTIC = ["graddrop", "gradvac", "pcgrad", "rgw"]


def call(aggregator: torch.nn.Module, J: torch.Tensor) -> torch.Tensor:
    """aggregator(J), with seeded activations of 2 samples × p/2 features for those that read them
    (GradDrop)."""
    if not aggregator.needs_representation:
        return aggregator(J)
    z = torch.randn(2, J.shape[1] // 2, generator=torch.Generator().manual_seed(5), dtype=J.dtype)
    return aggregator(J, representation=z)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_same_generator_seed_same_updates(name: str) -> None:
    J = torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a = AGGREGATORS.build(name, generator=torch.Generator().manual_seed(7))
    b = AGGREGATORS.build(name, generator=torch.Generator().manual_seed(7))
    for _ in range(3):
        torch.testing.assert_close(call(a, J), call(b, J), rtol=0, atol=0)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_state_dict_resumes_the_random_stream(name: str, roundtrip) -> None:
    J = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = AGGREGATORS.build(name, generator=torch.Generator().manual_seed(11))
    call(a, J)
    state = roundtrip(a)
    expected = [call(a, J) for _ in range(3)]
    b = AGGREGATORS.build(name, generator=torch.Generator().manual_seed(999))
    b.load_state_dict(state)
    for want in expected:
        torch.testing.assert_close(call(b, J), want, rtol=0, atol=0)


def test_pcgrad_order_is_drawn_from_its_generator() -> None:
    outs = {tuple(PCGrad(torch.Generator().manual_seed(s))(ORDERED).tolist()) for s in range(20)}
    assert len(outs) > 1  # different orders give different updates


def test_rgw_weights_are_random_points_of_the_simplex() -> None:
    rgw = RGW(torch.Generator().manual_seed(0))
    J = torch.eye(4, dtype=torch.float64)
    draws = torch.stack([rgw(J) for _ in range(4000)])  # J = I: the update is the weights
    assert float(draws.min()) > 0
    torch.testing.assert_close(draws.sum(1), torch.ones(4000, dtype=torch.float64))
    torch.testing.assert_close(draws.mean(0), torch.full((4,), 0.25, dtype=torch.float64), atol=0.01, rtol=0)
    assert float(draws.std(0).min()) > 0.05  # not constant


def test_gradvac_targets_load_into_a_fresh_instance(roundtrip) -> None:
    J = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    vac = GradVac(generator=torch.Generator().manual_seed(0))
    vac(J)
    fresh = GradVac()
    fresh.load_state_dict(roundtrip(vac))
    torch.testing.assert_close(fresh.targets, vac.targets)
    assert fresh.targets.shape == (3, 3) and float(fresh.targets.abs().sum()) > 0


def test_representation_flags() -> None:
    assert MGDA(upper_bound=True).on_representation and not MGDA().on_representation
    assert GradDrop().on_representation and not PCGrad().on_representation
    assert GradDrop().needs_representation and not MGDA(upper_bound=True).needs_representation


@pytest.mark.parametrize("name", STOCHASTIC)
def test_without_a_generator_the_draws_follow_torch_manual_seed(name: str) -> None:
    """Built without `generator=`, every seed gave the same draws (a fresh Generator's fixed seed), so a
    multi-seed study repeated one random sequence; the default generator now follows torch.manual_seed."""
    J = torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def draws(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        agg = AGGREGATORS.build(name)
        return torch.stack([call(agg, J) for _ in range(3)])

    torch.testing.assert_close(draws(0), draws(0), rtol=0, atol=0)
    assert not torch.equal(draws(0), draws(1))
