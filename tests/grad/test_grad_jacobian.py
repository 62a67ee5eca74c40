"""`jacobian` (one batched backward) against separate backward passes; `write_grad`; input errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lifelong.core.errors import DataError, IncompatibleError, ShapeMismatchError
from lifelong.grad import jacobian, write_grad
from lifelong.grad.base import check_jacobian


def _model_and_losses(k: int = 3) -> tuple[nn.Module, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4), nn.ReLU())
    heads = nn.ModuleList(nn.Linear(4, 2) for _ in range(k))
    x, y = torch.randn(16, 5), torch.randint(0, 2, (16,))
    z = shared(x)
    losses = torch.stack([nn.functional.cross_entropy(h(z), y) * (t + 1) for t, h in enumerate(heads)])
    return shared, list(shared.parameters()), losses


def test_batched_jacobian_equals_separate_backward_passes() -> None:
    _, params, losses = _model_and_losses()
    J = jacobian(losses, params, retain_graph=True)
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)])
            for loss in losses]
    assert J.shape == (3, sum(p.numel() for p in params))
    torch.testing.assert_close(J, torch.stack(rows), atol=1e-6, rtol=1e-5)
    assert float(J.norm()) > 0  # a real gradient, not zeros


def test_jacobian_row_of_a_closed_form_loss() -> None:
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    losses = torch.stack([(w**2).sum(), 3 * w[0] + w[1]])  # ∇ = 2w and (3, 1)
    torch.testing.assert_close(jacobian(losses, [w]), torch.tensor([[2.0, -4.0], [3.0, 1.0]]))


def test_jacobian_refuses_losses_without_graph_and_unused_params() -> None:
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(IncompatibleError, match="do not depend on any tensor"):
        jacobian(torch.ones(2), [w])
    unused = torch.ones(3, requires_grad=True)
    with pytest.raises(IncompatibleError, match=r"parameters \['#1 \(3,\)'\]"):
        jacobian(torch.stack([w.sum(), (2 * w).sum()]), [w, unused])
    with pytest.raises(ShapeMismatchError, match="vector of k >= 1 task losses"):
        jacobian(w.sum(), [w])
    with pytest.raises(IncompatibleError, match="no parameters"):
        jacobian(torch.stack([w.sum()]), [])


def test_write_grad_accumulates_in_parameter_order() -> None:
    a, b = torch.zeros(2, 2, requires_grad=True), torch.zeros(3, requires_grad=True)
    write_grad([a, b], torch.arange(7.0))
    write_grad([a, b], torch.ones(7))
    torch.testing.assert_close(a.grad, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    torch.testing.assert_close(b.grad, torch.tensor([5.0, 6.0, 7.0]))
    with pytest.raises(ShapeMismatchError, match="hold 7 values"):
        write_grad([a, b], torch.ones(6))


def test_update_from_jacobian_trains_like_backward_of_the_summed_loss() -> None:
    shared, params, losses = _model_and_losses()
    J = jacobian(losses, params, retain_graph=True)
    write_grad(params, J.sum(0))
    via_jacobian = [p.grad.clone() for p in params]
    shared.zero_grad()
    losses.sum().backward()
    for got, want in zip(via_jacobian, (p.grad for p in params), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bad", [torch.ones(3), torch.ones(0, 4), torch.ones(2, 2, 2)])
def test_aggregators_quote_the_shape_they_got(bad: torch.Tensor) -> None:
    with pytest.raises(ShapeMismatchError, match=str(tuple(bad.shape)).replace("(", r"\(").replace(")", r"\)")):
        check_jacobian(bad, "PCGrad")


def test_aggregators_refuse_non_finite_jacobians() -> None:
    from lifelong.core.registries import AGGREGATORS

    J = torch.tensor([[1.0, 2.0], [float("nan"), 0.0]])
    for name in AGGREGATORS.names():
        # Constant needs its weights; Krum checks k ≥ 3 only after the Jacobian was found finite
        aggregator = AGGREGATORS.build(name, **({"weights": [1.0, 1.0]} if name == "constant" else {}))
        with pytest.raises(DataError, match=r"tasks \[1\]"):
            aggregator(J.expand(aggregator.samples, 2, 2) if aggregator.samples > 1 else J, torch.ones(2))


def test_aggregators_that_weigh_by_the_losses_need_them_and_refuse_negative_ones() -> None:
    """Without losses they say how to call them. DB-MTL takes their logs, MoCo their lengths, IMTL
    drives e^s L to 1: a negative loss would flip the update (DB-MTL stepped up task 0's loss on
    J = I, L = (−0.5, 1))."""
    from lifelong.core.registries import AGGREGATORS

    users = [n for n in AGGREGATORS.names() if AGGREGATORS.get(n).needs_losses]
    assert sorted(users) == ["db_mtl", "imtl", "moco"]
    for name in users:
        with pytest.raises(IncompatibleError, match=r"weighs the task gradients by the task losses; call it as "
                                                    r"aggregator\(J, losses\)"):
            AGGREGATORS.build(name)(torch.eye(2))
        with pytest.raises(DataError, match=r"must be >= 0"):
            AGGREGATORS.build(name)(torch.eye(2), torch.tensor([-0.5, 1.0]))
        assert torch.isfinite(AGGREGATORS.build(name)(torch.eye(2), torch.tensor([0.0, 1.0]))).all()
