import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lifelong.continual.plugins.hat import (
    HAT,
    annealed_slope,
    attention_regulariser,
    compensation,
    weight_block,
)
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError


def test_slope_anneals_from_one_over_s_max_to_s_max_within_an_epoch():
    assert annealed_slope(0, 11, 400.0) == pytest.approx(1 / 400)
    assert annealed_slope(10, 11, 400.0) == pytest.approx(400.0)
    assert annealed_slope(5, 11, 400.0) == pytest.approx(1 / 400 + (400 - 1 / 400) / 2)


def test_regulariser_by_hand():
    gates = [torch.tensor([1.0, 0.5]), torch.tensor([0.25])]
    # first task: nothing used yet → c · (1 + 0.5 + 0.25) / 3
    assert float(attention_regulariser(gates, None, 0.75)) == pytest.approx(0.75 * 1.75 / 3)
    cumulative = [torch.tensor([1.0, 0.0]), torch.tensor([0.5])]
    # c · (1·0 + 0.5·1 + 0.25·0.5) / (0 + 1 + 0.5)
    assert float(attention_regulariser(gates, cumulative, 0.75)) == pytest.approx(0.75 * 0.625 / 1.5)


def test_embedding_gradient_compensation_by_hand():
    e = torch.tensor([0.0, 0.01, 100.0])
    factor = compensation(e, 4.0, 400.0)
    assert factor[0] == pytest.approx(400 / 4 * 2 / 2)
    assert factor[1] == pytest.approx(100 * (math.cosh(0.04) + 1) / (math.cosh(0.01) + 1))
    assert torch.isfinite(factor).all()  # cosh(s·e) is clamped


def test_weight_gradients_are_blocked_by_the_smaller_of_the_two_unit_masks():
    layer = nn.Linear(2, 2)
    block = weight_block(layer, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.5]))
    assert block.tolist() == [[0.0, 0.5], [1.0, 1.0]]
    conv = nn.Linear(8, 3)  # a flattened (2 channels × 4 positions) input: each channel's mask repeats
    block = weight_block(conv, torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0]))
    assert block[0].tolist() == [0.0] * 4 + [1.0] * 4 and block[2].tolist() == [1.0] * 8


def blocked_values(plugin: HAT):
    """Weights and biases between units every earlier task used fully (cumulative gate exactly 1)."""
    masks = plugin.cumulative
    inputs = [torch.ones(plugin.net.weighted_layers()[0].weight.shape[1]), *masks[:-1]]
    out = []
    for layer, a_out, a_in in zip(plugin.net.weighted_layers(), masks, inputs, strict=True):
        frozen = (weight_block(layer, a_out, a_in) == 0).expand_as(layer.weight)
        out.append((frozen, layer.weight.detach()[frozen].clone(), layer.bias.detach()[a_out == 1].clone()))
    return out


@settings(max_examples=6, deadline=None)
@given(c=st.sampled_from([0.0, 0.75, 2.0]), seed=st.integers(0, 100), width=st.integers(8, 24))
def test_cumulative_mask_only_grows_and_used_units_never_move(arch, c, seed, width):
    stream = arch.digits(n=3)
    plugin = HAT(c=c)
    eng = arch.engine(arch.mlp(stream, (width, width), seed=seed), [plugin], seed=seed)
    arch.train_one(eng, stream, 0)
    previous = [m.clone() for m in plugin.cumulative]
    for i in (1, 2):
        frozen = blocked_values(plugin)
        old_embeddings = [e.detach()[:i].clone() for e in plugin.net.embeddings]
        arch.train_one(eng, stream, i)
        for (mask, weights, biases), layer, a in zip(frozen, plugin.net.weighted_layers(), previous, strict=True):
            assert torch.equal(layer.weight.detach()[mask], weights)
            assert torch.equal(layer.bias.detach()[a == 1], biases)
        assert all(torch.equal(e.detach()[:i], o) for e, o in zip(plugin.net.embeddings, old_embeddings, strict=True))
        assert all(bool((m >= p).all()) for m, p in zip(plugin.cumulative, previous, strict=True))
        previous = [m.clone() for m in plugin.cumulative]
    assert any(bool(mask.any()) for mask, _, _ in blocked_values(plugin))  # the invariant had units to protect
    assert all(float(e.detach().abs().max()) <= 6.0 for e in plugin.net.embeddings)


def test_conv_backbone_blocks_through_the_flatten(arch):
    stream = arch.digits(n=2)
    plugin = HAT()
    eng = arch.engine(arch.mlp(stream, backbone="lenet", width=20), [plugin], epochs=3, batch_size=32)
    arch.train_one(eng, stream, 0)
    frozen = blocked_values(plugin)
    arch.train_one(eng, stream, 1)
    for (mask, weights, _), layer in zip(frozen, plugin.net.weighted_layers(), strict=True):
        assert torch.equal(layer.weight.detach()[mask], weights)
    assert plugin.net.weighted_layers()[2].weight.shape[1] == 200 and bool(frozen[2][0].any())


def test_replayed_rows_do_not_speed_up_the_annealing(arch):
    stream = arch.digits(n=2)
    replay, hat = build_strategy("replay+hat", {"replay": {"buffer_size": 200}, "hat": {"s_max": 50.0}})
    slope = arch.Probe(at_step=lambda: hat.net.s)
    eng = arch.engine(arch.mlp(stream, (16,)), [replay, hat, slope], epochs=2, batch_size=32)
    eng.run(stream)
    per_epoch = -(-stream[1].n_train // 32)
    second = slope.stepped[-2 * per_epoch:]  # the experience whose batches carry replayed rows
    assert max(slope.stepped) <= 50.0
    assert second[per_epoch - 1] == second[-1] == pytest.approx(50.0) and second[0] == pytest.approx(1 / 50)


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="s_max"):
        HAT(s_max=0)
    with pytest.raises(ConfigError, match="c must be"):
        HAT(c=-1.0)
