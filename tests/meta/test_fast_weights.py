import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.meta.fast_weights import adapt, adapt_online, functional_loss, params_of, sgd_step


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)


def _hand_sgd(model, x, y, lr, steps):
    """The reference: a copy of the module trained with torch.optim.SGD."""
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(ref(x), y).backward()
        opt.step()
    return dict(ref.named_parameters())


@pytest.mark.parametrize("steps", [1, 3])
def test_adapt_equals_hand_written_sgd(steps):
    model = _model()
    x, y = _data()
    fast = adapt(functional_loss(model, F.mse_loss), params_of(model), x, y, steps=steps, lr=0.1)
    ref = _hand_sgd(model, x, y, 0.1, steps)
    assert fast.keys() == ref.keys()
    for k in fast:
        torch.testing.assert_close(fast[k], ref[k], rtol=1e-6, atol=1e-7)
    # the module itself is untouched and the adapted weights moved
    assert not torch.equal(fast["0.weight"], model[0].weight)


def test_single_step_by_hand_on_linear_model():
    # loss = (w·x - y)^2 with w = [1, 2], x = [1, 1], y = 0: grad = 2 * 3 * x = [6, 6]
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
    x, y = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0]])
    fast = sgd_step(functional_loss(lin, F.mse_loss), params_of(lin), x, y, lr=0.1)
    torch.testing.assert_close(fast["weight"], torch.tensor([[0.4, 1.4]]))


def test_adapt_online_is_one_step_per_element():
    model = _model()
    x, y = _data()
    xs, ys = x.view(3, 2, 3), y.view(3, 2, 2)
    fast = adapt_online(functional_loss(model, F.mse_loss), params_of(model), xs, ys, lr=0.05)
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    for k in range(3):
        opt.zero_grad()
        F.mse_loss(ref(xs[k]), ys[k]).backward()
        opt.step()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(fast[name], p, rtol=1e-6, atol=1e-7)


def test_second_order_keeps_graph_first_order_cuts_it():
    model = _model()
    x, y = _data()
    loss_fn = functional_loss(model, F.mse_loss)
    params = params_of(model)
    second = adapt(loss_fn, params, x, y, lr=0.1)
    first = adapt(loss_fn, params, x, y, lr=0.1, first_order=True)
    for k in params:
        torch.testing.assert_close(first[k], second[k])
    # d(adapted)/d(theta) is I - lr * H: first order drops the Hessian term
    w = "2.weight"
    g2 = torch.autograd.grad(second[w].sum(), params["0.weight"], retain_graph=True)[0]
    g1 = torch.autograd.grad(first[w].sum(), params["0.weight"], allow_unused=True)[0]
    assert g1 is None or torch.count_nonzero(g1) == 0
    assert torch.count_nonzero(g2) > 0


def test_bad_inner_settings_raise_typed_errors():
    model = _model()
    x, y = _data()
    loss_fn = functional_loss(model, F.mse_loss)
    with pytest.raises(ConfigError, match="steps=0"):
        adapt(loss_fn, params_of(model), x, y, steps=0)
    with pytest.raises(ConfigError, match="lr=-0.1"):
        adapt_online(loss_fn, params_of(model), x.view(3, 2, 3), y.view(3, 2, 2), lr=-0.1)
    with pytest.raises(ShapeMismatchError, match="3 inputs but 2 targets"):
        adapt_online(loss_fn, params_of(model), x.view(3, 2, 3), y[:4].view(2, 2, 2), lr=0.1)
