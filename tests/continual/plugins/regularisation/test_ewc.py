"""EWC and online EWC: per-sample Fisher against a slow loop, penalties against closed forms."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.continual.importance import flat_params
from lifelong.continual.plugins.ewc import EWC, OnlineEWC, add_penalty, diagonal_fisher, online_fisher
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import (
    ConfigError,
    DataError,
    IncompatibleError,
    LabelOutOfRangeError,
    ShapeMismatchError,
)
from lifelong.data.stream import Experience, Stream


def _masked_nll(forward, model, mask, x, y, t):
    return lambda i: F.cross_entropy(mask(forward(model, x[i:i + 1], t[i:i + 1]), t[i:i + 1]), y[i:i + 1])


@pytest.mark.parametrize("setting,head", [("class", "single"), ("task", "single"), ("task", "multi")])
def test_empirical_fisher_equals_loop_of_per_sample_squares(reg, setting, head):
    model, stream = reg.tiny_model(head), reg.tiny_stream(setting)
    ctx = reg.context(model, stream, 1)
    exp = stream[1]
    x, y, t = exp.train_x, exp.train_y, exp.train_t()
    got = diagonal_fisher(model, x, y, t, mask=ctx.mask, chunk_size=5)
    grads = torch.stack(reg.loop_grads(model, _masked_nll(reg.forward, model, ctx.mask, x, y, t), len(y)))
    torch.testing.assert_close(got, grads.square().mean(0), rtol=1e-6, atol=1e-12)
    # per-sample squares, not the square of the batch-mean gradient
    assert (got - grads.mean(0).square()).abs().max() > 1e-3


@pytest.mark.parametrize("setting,head", [("class", "single"), ("task", "single"), ("task", "multi")])
def test_true_fisher_equals_loop_drawing_the_same_labels(reg, setting, head):
    model, stream = reg.tiny_model(head), reg.tiny_stream(setting)
    ctx = reg.context(model, stream, 1)
    exp = stream[1]
    x, t = exp.train_x, exp.train_t()
    got = diagonal_fisher(model, x, None, t, generator=torch.Generator().manual_seed(7), mask=ctx.mask)

    u = torch.rand(len(x), 1, generator=torch.Generator().manual_seed(7), dtype=x.dtype)
    labels = []
    with torch.no_grad():
        for i in range(len(x)):
            p = ctx.mask(reg.forward(model, x[i:i + 1], t[i:i + 1]), t[i:i + 1]).softmax(1)[0]
            cdf = p.cumsum(0)
            labels.append(int((cdf <= u[i, 0] * cdf[-1]).sum()))
    y = torch.tensor(labels)
    if setting == "task":
        assert set(labels) <= set(exp.classes)  # sampled within the task's classes only
    grads = torch.stack(reg.loop_grads(model, _masked_nll(reg.forward, model, ctx.mask, x, y, t), len(y)))
    torch.testing.assert_close(got, grads.square().mean(0), rtol=1e-6, atol=1e-12)
    assert not torch.allclose(got, diagonal_fisher(model, x, exp.train_y, t, mask=ctx.mask))


def _two_param_stream() -> Stream:
    xs = [torch.tensor([[1.0], [2.0], [-1.0], [0.5]], dtype=torch.float64),
          torch.tensor([[-2.0], [1.5], [0.25], [3.0]], dtype=torch.float64)]
    ys = [torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 0])]
    return Stream(tuple(Experience(i, x, y, x, y, (0, 1), i) for i, (x, y) in enumerate(zip(xs, ys, strict=True))),
                  "domain", 2)


def _two_param_model(w) -> nn.Module:
    model = nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w, dtype=torch.float64).reshape(2, 1))
    return model


def _closed_form_fisher(w, exp) -> torch.Tensor:
    """logits_k = w_k x, so ∂(−log p_y)/∂w_k = x (p_k − 1[y = k]) and F_k = mean x² (p_k − 1[y=k])²."""
    w = torch.tensor(w, dtype=torch.float64)
    x = exp.train_x[:, 0]
    p = (x[:, None] * w).softmax(1)
    onehot = F.one_hot(exp.train_y, 2).double()
    return (x[:, None] ** 2 * (p - onehot) ** 2).mean(0)


def _vec(w) -> torch.Tensor:
    return torch.tensor(w, dtype=torch.float64)


def _set(model, w):
    with torch.no_grad():
        model.weight.copy_(_vec(w).reshape(2, 1))


def test_ewc_penalty_equals_closed_form_on_two_parameters(reg):
    stream, w1, w2, w3 = _two_param_stream(), [0.3, -0.7], [1.1, 0.2], [-0.4, 0.9]
    model = _two_param_model(w1)
    plugin = EWC(ewc_lambda=3.0, fisher="empirical", samples=None)
    assert plugin.loss_terms(reg.context(model, stream, 0), None, None) == {}
    plugin.after_experience(reg.context(model, stream, 0))
    f1 = _closed_form_fisher(w1, stream[0])
    torch.testing.assert_close(plugin.weight, f1)
    _set(model, w2)
    expected = 1.5 * (f1 * (_vec(w2) - _vec(w1)) ** 2).sum()
    torch.testing.assert_close(plugin.loss_terms(reg.context(model, stream, 1), None, None)["penalty"],
                               expected, rtol=1e-12, atol=1e-12)

    # a second task: its own (F_2, θ*_2), the two penalties summed
    plugin.after_experience(reg.context(model, stream, 1))
    f2 = _closed_form_fisher(w2, stream[1])
    torch.testing.assert_close(plugin.fishers, torch.stack([f1, f2]))
    _set(model, w3)
    d1, d2 = _vec(w3) - _vec(w1), _vec(w3) - _vec(w2)
    expected = 1.5 * ((f1 * d1 ** 2).sum() + (f2 * d2 ** 2).sum())
    ctx = reg.context(model, stream, 1)
    penalty = plugin.loss_terms(ctx, None, None)["penalty"]
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=1e-12)
    # its gradient λ Σ_t F_t (θ − θ*_t) is added to .grad after the backward pass, once per value
    assert not penalty.requires_grad and model.weight.grad is None
    plugin.add_grads(ctx, None)
    torch.testing.assert_close(model.weight.grad[:, 0], 3.0 * (f1 * d1 + f2 * d2))
    plugin.add_grads(ctx, None)
    torch.testing.assert_close(model.weight.grad[:, 0], 3.0 * (f1 * d1 + f2 * d2))


def test_online_ewc_accumulates_gamma_f_old_plus_f_new(reg):
    stream, w1, w2, w3 = _two_param_stream(), [0.3, -0.7], [1.1, 0.2], [-0.4, 0.9]
    model = _two_param_model(w1)
    plugin = OnlineEWC(ewc_lambda=2.0, gamma=0.6, fisher="empirical", samples=None)
    plugin.after_experience(reg.context(model, stream, 0))
    _set(model, w2)
    plugin.after_experience(reg.context(model, stream, 1))
    f1, f2 = _closed_form_fisher(w1, stream[0]), _closed_form_fisher(w2, stream[1])
    torch.testing.assert_close(plugin.weight, 0.6 * f1 + f2)
    torch.testing.assert_close(plugin.anchor, _vec(w2))
    _set(model, w3)
    expected = ((0.6 * f1 + f2) * (_vec(w3) - _vec(w2)) ** 2).sum()
    torch.testing.assert_close(plugin.loss_terms(reg.context(model, stream, 1), None, None)["penalty"], expected)
    assert torch.equal(online_fisher(None, f2, 0.6), f2)


def test_add_penalty_folds_tasks_exactly_for_any_theta():
    """Parallel-axis merging: after folding three tasks in, one quadratic plus a constant equals the
    sum of the separate penalties at every θ (a parameter no task cares about keeps the last anchor)."""
    gen = torch.Generator().manual_seed(3)
    fishers = torch.rand(3, 8, generator=gen, dtype=torch.float64)
    fishers[:, 0] = 0
    anchors = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    weight, anchor, offset = None, None, 0.0
    for fisher, theta in zip(fishers, anchors, strict=True):
        weight, anchor, offset = add_penalty(weight, anchor, offset, fisher, theta)
    assert torch.equal(weight, fishers.sum(0)) and anchor[0] == anchors[-1, 0]
    for _ in range(5):
        theta = torch.randn(8, generator=gen, dtype=torch.float64)
        direct = (fishers * (theta - anchors) ** 2).sum()
        merged = (weight * (theta - anchor) ** 2).sum() + offset
        assert merged.item() == pytest.approx(direct.item(), rel=1e-12)
    with pytest.raises(ShapeMismatchError):
        add_penalty(weight, anchor, offset, fishers[0, :2], anchors[0])


def test_fisher_budget_uses_the_engine_generator(reg):
    model, stream = reg.tiny_model(), reg.tiny_stream("class", n=40)
    a = EWC(samples=8, fisher="empirical")
    a.after_experience(reg.context(model, stream, 0, seed=1))
    b = EWC(samples=8, fisher="empirical")
    b.after_experience(reg.context(model, stream, 0, seed=1))
    c = EWC(samples=8, fisher="empirical")
    c.after_experience(reg.context(model, stream, 0, seed=2))
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    assert torch.equal(a.anchors[0], flat_params(model).detach())
    torch.testing.assert_close(a.anchor, a.anchors[0], rtol=1e-15, atol=0)


def test_aliases_and_config_errors(reg):
    assert [p.name for p in build_strategy("ewc_on")] == ["online_ewc"]
    assert [p.name for p in build_strategy("onlineEWC")] == ["online_ewc"]
    assert [p.name for p in build_strategy("EWC")] == ["ewc"]
    with pytest.raises(ConfigError, match="fisher must be one of"):
        EWC(fisher="diagonal")
    with pytest.raises(ConfigError, match="ewc_lambda"):
        EWC(ewc_lambda=-1)
    with pytest.raises(ConfigError, match="samples"):
        EWC(samples=0)
    with pytest.raises(ConfigError, match="gamma"):
        OnlineEWC(gamma=float("nan"))
    with pytest.raises(ConfigError, match="unknown keys"):
        build_strategy("ewc", {"lambda": 3})
    model, stream = reg.tiny_model(), reg.tiny_stream("class")
    with pytest.raises(ConfigError, match="generator"):
        diagonal_fisher(model, stream[0].train_x)
    with pytest.raises(ShapeMismatchError, match="one row per input"):
        diagonal_fisher(model, stream[0].train_x, stream[0].train_y[:3])


def test_bad_fisher_inputs_raise_typed_errors_before_any_gradient(reg):
    model, stream = reg.tiny_model(), reg.tiny_stream("class")
    x, y = stream[0].train_x, stream[0].train_y
    assert set(y.tolist()) == {0, 1}
    with pytest.raises(LabelOutOfRangeError, match=r"labels span \[3, 4\] but the model has 4 outputs"):
        diagonal_fisher(model, x, y + 3)
    with pytest.raises(LabelOutOfRangeError, match="must lie in"):
        diagonal_fisher(model, x, y - 1)
    with pytest.raises(DataError, match="integer class labels"):
        diagonal_fisher(model, x, y.double())
    with pytest.raises(ShapeMismatchError, match=r"shape \(N,\)"):
        diagonal_fisher(model, x, y[:, None])
    for wrong in (x.reshape(len(x), -1)[:, :8], x.float()):  # wrong width, wrong dtype
        with pytest.raises(ShapeMismatchError, match="the model fails on inputs"):
            diagonal_fisher(model, wrong, y)
    with pytest.raises(ShapeMismatchError, match="the model fails on inputs"):
        diagonal_fisher(model, x[:, :, :2], generator=torch.Generator())
    with pytest.raises(ConfigError, match="chunk_size must be a positive integer, got 2.5"):
        diagonal_fisher(model, x, y, chunk_size=2.5)
    with pytest.raises(IncompatibleError, match="no parameters"):
        diagonal_fisher(nn.Flatten(), x.reshape(len(x), -1)[:, :4], y % 2)
