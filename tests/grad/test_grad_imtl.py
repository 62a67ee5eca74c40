"""IMTL: IMTL-G's weights on the gradients of IMTL-L's scaled losses, and the scales' own gradient."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lifelong.core.errors import ShapeMismatchError
from lifelong.grad import IMTL, IMTLG
from lifelong.multitask.weighting import build_weighting

F64 = torch.float64
# g1 = (2, 1, 0), g2 = (−1, 0, 1)
CONFLICT = torch.tensor([[2.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], dtype=F64)
# orthogonal gradients of norms 1 and 2
ORTHO = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)


def test_first_call_is_imtl_g_and_writes_the_scale_gradient() -> None:
    # s = 0: e^{s} g = g, so the update is IMTL-G's; ∂/∂s (e^{s} L − s) = L − 1
    agg = IMTL()
    torch.testing.assert_close(agg(CONFLICT, torch.tensor([3.0, 0.25], dtype=F64)), IMTLG()(CONFLICT))
    torch.testing.assert_close(agg.log_scale.detach(), torch.zeros(2))
    torch.testing.assert_close(agg.log_scale.grad, torch.tensor([2.0, -0.75]))


def test_scales_set_the_weights_on_the_raw_gradients_by_hand() -> None:
    # s = (log 2, 0): scaled gradients (2, 0), (0, 2); equal projections with Σα = 1 give α = (½, ½),
    # so w = α e^{s} = (1, ½) and d = (1, 1). IMTL-G on the raw rows: α ∝ G⁻¹ n = (1, ½) → (⅔, ⅓),
    # d = (⅔, ⅔): the same direction, a different length.
    agg = IMTL()
    agg(ORTHO, torch.ones(2, dtype=F64))
    with torch.no_grad():
        agg.log_scale.copy_(torch.tensor([math.log(2.0), 0.0]))
    torch.testing.assert_close(agg(ORTHO, torch.ones(2, dtype=F64)), torch.tensor([1.0, 1.0], dtype=F64))
    torch.testing.assert_close(agg.last_weights, torch.tensor([1.0, 0.5], dtype=F64))
    torch.testing.assert_close(IMTLG()(ORTHO), torch.tensor([2 / 3, 2 / 3], dtype=F64))


def test_the_scale_gradient_adds_to_one_already_there() -> None:
    # two calls without an optimiser step in between: (L − 1) twice
    agg = IMTL()
    losses = torch.tensor([0.5, 4.0], dtype=F64)
    agg(ORTHO, losses)
    agg(ORTHO, losses)
    torch.testing.assert_close(agg.log_scale.grad, torch.tensor([-1.0, 6.0]))


def test_scale_gradient_vanishes_where_every_scaled_loss_is_one() -> None:
    # e^{s} L = 1 ⇔ s = −log L, the minimum of e^{s} L − s
    losses = torch.tensor([2.0, 0.5, 7.0], dtype=F64)
    agg = IMTL()
    agg(torch.eye(3, dtype=F64), losses)
    agg.log_scale.grad = None
    with torch.no_grad():
        agg.log_scale.copy_(-losses.log())
    agg(torch.eye(3, dtype=F64), losses)
    torch.testing.assert_close(agg.log_scale.grad, torch.zeros(3), atol=1e-6, rtol=0)


def test_the_weightings_optimiser_drives_every_scaled_loss_to_one() -> None:
    # The optimiser is built before the first call, as the engine does, from weighting.parameters();
    # with fixed losses, gradient descent on e^{s} L − s converges to s = −log L.
    weighting = build_weighting("imtl", 2)
    optimiser = torch.optim.SGD(weighting.parameters(), lr=0.1)
    losses = torch.tensor([4.0, 0.25], dtype=F64)
    for _ in range(300):
        optimiser.zero_grad()
        weighting.aggregate(CONFLICT, losses)
        optimiser.step()
    scale = weighting.aggregator.log_scale.detach()
    torch.testing.assert_close(scale.exp() * losses.float(), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(weighting.weights, weighting.aggregator.last_weights.float())


def test_state_dict_resumes_bit_exactly(roundtrip, loss_steps) -> None:
    steps = loss_steps

    def run(agg: IMTL, optimiser: torch.optim.Optimizer, part: list) -> list[torch.Tensor]:
        outs = []
        for Jt, losses in part:
            optimiser.zero_grad()
            outs.append(agg(Jt, losses))
            optimiser.step()
            outs.append(agg.log_scale.detach().clone())
        return outs

    first = IMTL()
    opt_first = torch.optim.Adam(first.parameters(), lr=0.05)
    run(first, opt_first, steps[:2])
    state, opt_state = roundtrip(first), copy.deepcopy(opt_first.state_dict())
    expected = run(first, opt_first, steps[2:])
    second = IMTL()
    opt_second = torch.optim.Adam(second.parameters(), lr=0.05)
    second.load_state_dict(state)
    opt_second.load_state_dict(opt_state)
    for got, want in zip(run(second, opt_second, steps[2:]), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_refuses_another_number_of_tasks_later() -> None:
    agg = IMTL()
    agg(CONFLICT, torch.ones(2, dtype=F64))
    with pytest.raises(ShapeMismatchError, match="loss scales for 2 tasks but the Jacobian has 3"):
        agg(torch.eye(3, dtype=F64), torch.ones(3, dtype=F64))
