import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lifelong.continual.plugins.progressive import Progressive
from lifelong.continual.strategies import build_strategy
from lifelong.continual.task_identity import TaskSlots, infer_by_entropy
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.models.lateral import ProgressiveNet
from lifelong.models.layer_list import layer_list
from lifelong.models.routed import Routed


@settings(max_examples=6, deadline=None)
@given(width=st.integers(4, 24), lateral=st.one_of(st.none(), st.integers(1, 8)), seed=st.integers(0, 100))
def test_finished_columns_are_bit_identical_and_out_of_the_optimiser(arch, width, lateral, seed):
    stream = arch.digits(n=3)
    plugin = Progressive(lateral_width=lateral)
    added = arch.Probe(at_start=lambda: arch.snapshot(plugin.net.columns[-1].named_parameters()))
    eng = arch.engine(arch.mlp(stream, (width, width), seed=seed), [plugin, added], seed=seed)
    arch.train_one(eng, stream, 0)
    first = arch.snapshot(plugin.net.columns[0].named_parameters())
    arch.train_one(eng, stream, 1)
    second = arch.snapshot([*plugin.net.columns[1].named_parameters(), *plugin.net.laterals[1].named_parameters()])
    arch.train_one(eng, stream, 2)
    assert arch.identical(first, arch.snapshot(plugin.net.columns[0].named_parameters()))
    assert arch.identical(second, arch.snapshot([*plugin.net.columns[1].named_parameters(),
                                       *plugin.net.laterals[1].named_parameters()]))
    assert not any(p.requires_grad for p in eng.model.parameters())  # frozen after every experience
    # the last column did learn: training moved it from the values it was added with
    assert len(added.started) == 3
    assert not arch.identical(added.started[2], arch.snapshot(plugin.net.columns[2].named_parameters()))


def column_formula(d, h1, h2, c, k, w1=None, w2=None):
    """Parameters of column k of an MLP d-h1-h2 with a c-way output and lateral adapters (by hand)."""
    column = d * h1 + h1 + h1 * h2 + h2 + h2 * c + c
    if k == 0:
        return column
    w1, w2 = w1 or h1, w2 or h2
    into_2 = k + (k * h1 * w1 + w1) + w1 * h2
    into_out = k + (k * h2 * w2 + w2) + w2 * c
    return column + into_2 + into_out


@pytest.mark.parametrize("lateral", [None, 5])
def test_growth_per_task_matches_the_formula(arch, lateral):
    stream = arch.digits(n=3)
    plugin = Progressive(lateral_width=lateral)
    eng = arch.engine(arch.mlp(stream, (12, 9)), [plugin])
    eng.run(stream)
    expected = [column_formula(64, 12, 9, 10, k, lateral, lateral) for k in range(3)]
    assert plugin.parameter_report()["added"] == expected
    assert plugin.parameter_report()["parameters"] == sum(expected)
    assert sum(p.numel() for p in eng.model.parameters()) == sum(expected)  # the old backbone is gone


def test_conv_columns_grow_by_conv_laterals(arch):
    stream = arch.digits(n=2)
    plugin = Progressive(lateral_width=4)
    model = arch.mlp(stream, backbone="lenet", width=20)
    eng = arch.engine(model, [plugin], epochs=6, batch_size=32)
    arch.train_one(eng, stream, 0)
    before = arch.snapshot(plugin.net.columns[0].named_parameters())
    arch.train_one(eng, stream, 1)
    assert arch.identical(before, arch.snapshot(plugin.net.columns[0].named_parameters()))
    conv2, fc = plugin.net.columns[0][3], plugin.net.columns[0][7]
    # laterals into conv2 (1x1 V from 20 channels to 4, U with conv2's 5x5 kernel), fc and the output
    expected = (1 + 20 * 4 + 4 + 4 * 50 * 25) + (1 + fc.in_features * 4 + 4 + 4 * 20) + (1 + 20 * 4 + 4 + 4 * 10)
    column = sum(p.numel() for p in plugin.net.columns[0].parameters())
    assert plugin.parameter_report()["added"] == [column, column + expected]
    u = plugin.net.laterals[1][0].u
    assert isinstance(u, nn.Conv2d) and u.kernel_size == conv2.kernel_size
    assert eng.evaluate(stream, eng.context(stream, 1))[1] > 0.8


def test_lateral_adapter_computes_the_papers_formula():
    torch.manual_seed(3)
    layers = [nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)]
    net = ProgressiveNet(layers, lateral_width=3)
    net.add_column(torch.Generator().manual_seed(1))
    x = torch.randn(5, 3)
    c0, c1, lat = net.columns[0], net.columns[1], net.laterals[1][0]
    h0 = F.relu(c0[0](x))                                    # column 0's activation into its layer 2
    h1 = F.relu(c1[0](x))
    adapter = lat.u.weight @ F.relu(lat.v.weight @ (lat.alpha * h0).T + lat.v.bias[:, None])
    expected = c1[2](h1) + adapter.T                         # W h^(2) + U σ(V α h^(1))
    assert torch.allclose(net(x, torch.ones(5, dtype=torch.long)), expected, atol=1e-6)
    assert torch.allclose(net(x, torch.zeros(5, dtype=torch.long)), c0[2](h0), atol=1e-6)
    mixed = torch.tensor([0, 1, 0, 1, 1])
    assert torch.allclose(net(x, mixed)[mixed == 0], c0[2](h0)[mixed == 0], atol=1e-6)


def test_the_task_label_chooses_the_column(arch):
    stream = arch.digits(n=2)
    plugin = Progressive()
    eng = arch.engine(arch.mlp(stream, (16,)), [plugin])
    eng.run(stream)
    x, t = stream[0].test_x, stream[0].test_t()
    ctx = eng.context(stream, 1)
    assert plugin.predict(ctx, x, t) is None  # routes, the engine then masks the logits
    with torch.no_grad():
        scores = eng.predict(ctx, x, t)
        column0 = plugin.net.outputs(x, 1)[0]
    assert torch.equal(scores, ctx.mask(column0, t))


def test_entropy_inference_chooses_the_most_confident_task():
    logits = torch.tensor([[[4.0, -4.0, 0.0, 0.0]], [[0.0, 0.0, 0.2, 0.1]]])   # (tasks, batch, classes)
    allowed = torch.tensor([[True, True, False, False], [False, False, True, True]])
    scores = infer_by_entropy(logits, allowed)
    assert scores.argmax(1).tolist() == [0]
    assert scores[0, 2] == torch.finfo(scores.dtype).min
    flipped = infer_by_entropy(logits.flip(0), allowed.flip(0))
    assert flipped.argmax(1).tolist() == [0]


def test_class_incremental_evaluation_by_inferring_the_column(arch):
    stream = arch.digits("class", n=3)
    naive = arch.engine(arch.mlp(stream, (32,)), build_strategy("naive"), epochs=20)
    naive.run(stream)
    plugin = Progressive(infer_task=True)
    eng = arch.engine(arch.mlp(stream, (32,)), [plugin], epochs=20)
    eng.check(stream)
    eng.run(stream)
    # naive keeps only the last task (≈ 1/3); entropy-chosen columns keep part of the others
    assert sum(eng.matrix[-1]) / 3 > sum(naive.matrix[-1]) / 3 + 0.2
    with pytest.raises(IncompatibleError, match="task labels"):
        arch.engine(arch.mlp(stream), [Progressive()]).check(stream)


def test_slots_map_unseen_tasks_to_the_newest_and_refuse_repeats():
    slots = TaskSlots([3, 1])
    assert slots.of(torch.tensor([1, 3, 0, 7])).tolist() == [1, 0, 1, 1]
    with pytest.raises(IncompatibleError, match="task 3 arrived again"):
        slots.add(3, "progressive")


def test_branching_backbones_and_bad_arguments_are_refused(arch):
    stream = arch.digits(n=1)
    resnet = arch.mlp(stream, backbone="resnet18", nf=4)
    with pytest.raises(IncompatibleError, match="plain sequence"):
        layer_list(resnet.backbone, stream.input_shape)
    with pytest.raises(ConfigError, match="lateral_width"):
        Progressive(lateral_width=0)
    with pytest.raises(ConfigError, match="lateral_width"):
        Progressive(lateral_width=True)


def test_a_parameterless_backbone_is_refused_and_a_failing_probe_restores_the_mode():
    with pytest.raises(IncompatibleError, match="no parameters"):
        layer_list(nn.Sequential(nn.Flatten(), nn.ReLU()), (1, 8, 8))
    broken = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))  # 64 inputs do not fit its layer
    with pytest.raises(RuntimeError):
        layer_list(broken, (1, 8, 8))
    assert broken.training
    with pytest.raises(IncompatibleError, match="no parameters"):
        ProgressiveNet([nn.ReLU()]).add_column(torch.Generator())


def test_a_batch_changed_after_routing_fails_loudly():
    router = Routed(nn.Identity())
    router.route(torch.zeros(3, dtype=torch.long))
    with pytest.raises(IncompatibleError, match="declare `runs_model = True`"):
        router(torch.zeros(4, 2))
