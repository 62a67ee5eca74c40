"""Memory Aware Synapses: label-free importance, checked by hand on a linear model."""

import dataclasses

import pytest
import torch
from torch import nn

from lifelong.continual.plugins.mas import MAS, output_sensitivity
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError, IncompatibleError, ShapeMismatchError
from lifelong.data.stream import Stream


def test_output_sensitivity_equals_hand_computation_on_linear_model():
    """f(x) = W x + b: ∂‖f‖²/∂W = 2 f xᵀ and ∂‖f‖²/∂b = 2 f, so Ω = mean_n |2 f_n x_nᵀ|, mean_n |2 f_n|."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    f = model(x).detach()
    omega_w = (2 * f[:, :, None] * x[:, None, :]).abs().mean(0)
    omega_b = (2 * f).abs().mean(0)
    got = output_sensitivity(model, x, chunk_size=3)
    torch.testing.assert_close(got, torch.cat([omega_w.reshape(-1), omega_b]), rtol=1e-12, atol=1e-14)


def test_output_sensitivity_equals_loop_on_multi_head_model(reg):
    model, stream = reg.tiny_model("multi"), reg.tiny_stream("task")
    x, t = stream[1].train_x, stream[1].train_t()
    grads = reg.loop_grads(model, lambda i: reg.forward(model, x[i:i + 1], t[i:i + 1]).square().sum(), len(x))
    torch.testing.assert_close(output_sensitivity(model, x, t), torch.stack(grads).abs().mean(0),
                               rtol=1e-10, atol=1e-14)


def _relabel(stream: Stream, perm_seed: int) -> Stream:
    gen = torch.Generator().manual_seed(perm_seed)
    exps = tuple(dataclasses.replace(e, train_y=e.train_y[torch.randperm(e.n_train, generator=gen)])
                 for e in stream)
    return Stream(exps, stream.setting, stream.n_classes)


def test_importance_is_label_independent(reg):
    model, stream = reg.tiny_model(), reg.tiny_stream("class", n=30)
    shuffled = _relabel(stream, 1)
    assert not torch.equal(shuffled[0].train_y, stream[0].train_y)
    a, b = MAS(samples=10), MAS(samples=10)
    a.after_experience(reg.context(model, stream, 0))
    b.after_experience(reg.context(model, shuffled, 0))
    assert torch.equal(a.weight, b.weight)
    full = MAS(samples=None)
    full.after_experience(reg.context(model, stream, 0))
    torch.testing.assert_close(full.weight, output_sensitivity(model, stream[0].train_x), rtol=0, atol=0)


def test_importance_adds_up_across_tasks_and_penalty(reg):
    model, stream = reg.tiny_model(), reg.tiny_stream("class")
    plugin = MAS(mas_lambda=2.0, samples=None)
    plugin.after_experience(reg.context(model, stream, 0))
    first = output_sensitivity(model, stream[0].train_x)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    anchor = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    plugin.after_experience(reg.context(model, stream, 1))
    second = output_sensitivity(model, stream[1].train_x)
    torch.testing.assert_close(plugin.weight, first + second)
    assert torch.equal(plugin.anchor, anchor)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    expected = 2.0 * ((first + second) * (theta - anchor) ** 2).sum()
    torch.testing.assert_close(plugin.loss_terms(reg.context(model, stream, 1), None, None)["penalty"], expected)


def test_aliases_and_config_errors():
    assert [p.name for p in build_strategy("memory_aware_synapses")] == ["mas"]
    with pytest.raises(ConfigError, match="mas_lambda"):
        MAS(mas_lambda=float("inf"))
    with pytest.raises(ConfigError, match="chunk_size"):
        MAS(chunk_size=0)


def test_bad_sensitivity_inputs_raise_typed_errors():
    model = nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(ShapeMismatchError, match=r"the model fails on inputs of per-sample shape \(4,\)"):
        output_sensitivity(model, torch.randn(5, 4, dtype=torch.float64))
    with pytest.raises(ConfigError, match="chunk_size must be a positive integer, got '8'"):
        output_sensitivity(model, x, chunk_size="8")
    with pytest.raises(IncompatibleError, match="no parameters"):
        output_sensitivity(nn.Identity(), x)
    with pytest.raises(ConfigError, match="chunk_size"):
        MAS(chunk_size=2.5)
