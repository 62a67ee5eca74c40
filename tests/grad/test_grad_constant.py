"""Constant: a fixed linear combination of the task gradients."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad import Constant
from lifelong.multitask.weighting import build_weighting

# g1 = (2, 1, 0), g2 = (−1, 0, 1)
CONFLICT = torch.tensor([[2.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)


def test_update_is_the_fixed_combination() -> None:
    # 2 g1 − g2 = (4 + 1, 2, −1), at every call
    agg = AGGREGATORS.build("Constant", weights=[2.0, -1.0])
    for _ in range(2):
        torch.testing.assert_close(agg(CONFLICT), torch.tensor([5.0, 2.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(agg.last_weights, torch.tensor([2.0, -1.0], dtype=torch.float64))


def test_keeps_the_jacobians_dtype_and_accepts_a_tensor() -> None:
    out = Constant(torch.tensor([0.5, 0.5]))(CONFLICT.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5, 0.5]))


def test_refuses_a_jacobian_with_another_number_of_rows() -> None:
    with pytest.raises(ShapeMismatchError, match=r"3 weights \[1.0, 1.0, 1.0\] for 2 tasks"):
        Constant([1.0, 1.0, 1.0])(CONFLICT)


@pytest.mark.parametrize("weights", [[], [1.0, float("nan")], [[1.0, 2.0]]])
def test_refuses_weights_that_are_not_one_finite_float_per_task(weights: list) -> None:
    with pytest.raises(ConfigError, match="non-empty list of finite numbers"):
        Constant(weights)


def test_weights_are_required_and_reach_the_weighting() -> None:
    with pytest.raises(ConfigError, match=r"missing keys \['weights'\]"):
        AGGREGATORS.build("constant")
    w = build_weighting("constant", 2, weights=[1.0, 3.0])
    torch.testing.assert_close(w.aggregate(CONFLICT), torch.tensor([-1.0, 1.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(w.weights, torch.tensor([1.0, 3.0]))
