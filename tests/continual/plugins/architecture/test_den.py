import pytest
import torch
from torch import nn

from lifelong.continual.plugins.den import (
    DEN,
    group_soft_threshold,
    select_units,
    soft_threshold,
    unit_drift,
)
from lifelong.core.errors import IncompatibleError, NonFiniteLossError
from lifelong.models.expandable import ExpandableMLP


def test_proximal_steps_by_hand():
    assert torch.allclose(soft_threshold(torch.tensor([0.5, -0.05, -0.3]), 0.1), torch.tensor([0.4, 0.0, -0.2]))
    rows = group_soft_threshold(torch.tensor([[3.0, 4.0], [0.03, 0.04]]), 1.0)
    assert torch.allclose(rows, torch.tensor([[2.4, 3.2], [0.0, 0.0]]))


def test_selection_follows_non_zero_weights_down_from_the_head():
    w0 = torch.ones(3, 2)
    w1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    head = torch.tensor([[0.0, 1.0], [0.0, 2.0]])      # only hidden unit 1 of the top layer is used
    top, bottom = select_units([w0, w1], head)[::-1]
    assert top.tolist() == [False, True] and bottom.tolist() == [False, True, False]


def test_drift_is_the_distance_of_old_incoming_weights():
    old = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    new = torch.tensor([[4.0, 4.0, 9.0], [0.0, 1.0, 9.0], [7.0, 7.0, 7.0]])  # a new input and a new unit
    assert unit_drift(new, old).tolist() == [5.0, 0.0]


def test_timestamps_keep_earlier_tasks_blind_to_later_units():
    torch.manual_seed(0)
    net = ExpandableMLP.from_linears([nn.Linear(4, 5), nn.Linear(5, 3)], n_classes=2)
    gen = torch.Generator().manual_seed(0)
    net.add_head(gen)
    net.add_head(gen)
    x = torch.randn(7, 4)
    zeros, ones = torch.zeros(7, dtype=torch.long), torch.ones(7, dtype=torch.long)
    before0, before1 = net(x, zeros), net(x, ones)
    net.append_units(0, torch.randn(2, 4), torch.randn(2), torch.randn(3, 2), stamp=1)
    net.append_units(1, torch.randn(3, 5 + 2), torch.randn(3), torch.randn(2, 3), stamp=1)
    # masked units add exact zeros; only the summation order of the wider matmul may differ
    torch.testing.assert_close(net(x, zeros), before0, rtol=0, atol=1e-6)
    assert not torch.allclose(net(x, ones), before1)
    assert net.widths() == [4, 7, 6] and net.stamp(0).tolist() == [0] * 5 + [1] * 2
    mixed = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    assert torch.allclose(net(x, mixed)[mixed == 0], before0[mixed == 0], atol=1e-6)
    net.keep_units(1, net.stamp(1) == 0)
    net.keep_units(0, net.stamp(0) == 0)
    assert torch.allclose(net(x, ones), before1, atol=1e-6)


def run_two(arch, **kwargs):
    stream = arch.digits(n=2)
    plugin = DEN(**kwargs)
    eng = arch.engine(arch.mlp(stream, (16, 16)), [plugin])
    eng.run(stream)
    return plugin, eng, stream


def test_expansion_adds_k_units_when_the_loss_stays_high(arch):
    plugin, _, _ = run_two(arch, loss_threshold=0.0, split_threshold=1e9, k=4, group=0.0)
    assert plugin.widths == [64, 20, 20]
    assert [int((plugin.net.stamp(i) == 1).sum()) for i in range(2)] == [4, 4]
    new_head = 16 * 10 + 10
    layer0 = 64 * 4 + 4 + 16 * 4          # new rows (+ biases) and the columns old layer-1 units read
    layer1 = (16 + 4) * 4 + 4 + 2 * 10 * 4  # new rows (+ biases) and a column in each of the 2 heads
    assert plugin.parameter_report()["added"][1] == new_head + layer0 + layer1


def test_group_sparsity_removes_the_useless_new_units(arch, monkeypatch):
    grown, append = [], ExpandableMLP.append_units

    def recording(net, *args, **kwargs):
        append(net, *args, **kwargs)
        grown.append(net.widths())

    monkeypatch.setattr(ExpandableMLP, "append_units", recording)
    plugin, _, _ = run_two(arch, loss_threshold=0.0, split_threshold=1e9, k=4, group=1e3)
    assert grown == [[64, 20, 16], [64, 20, 20]]  # the expansion did add k units per layer
    assert plugin.widths == [64, 16, 16]   # every new unit's group was shrunk to zero and removed


def test_no_expansion_below_the_loss_threshold(arch):
    plugin, _, _ = run_two(arch, loss_threshold=1e9, split_threshold=1e9)
    assert plugin.widths == [64, 16, 16]


def test_splitting_every_drifted_unit_restores_the_earlier_task_exactly(arch):
    stream = arch.digits(n=2)
    plugin = DEN(loss_threshold=1e9, split_threshold=0.0, k=64)
    eng = arch.engine(arch.mlp(stream, (16, 16)), [plugin])
    arch.train_one(eng, stream, 0)
    x, t = stream[0].test_x, stream[0].test_t()
    with torch.no_grad():
        plugin.router.route(torch.zeros_like(t))
        before = eng.model(x)
    arch.train_one(eng, stream, 1)
    with torch.no_grad():
        plugin.router.route(torch.zeros_like(t))
        after = eng.model(x)
    assert torch.equal(before, after)
    assert all(int((plugin.net.stamp(i) == 1).sum()) > 0 for i in range(2))  # duplicates were made
    assert plugin.widths == plugin.net.widths() and plugin.widths[1] > 16


def test_a_non_finite_loss_in_a_phase_of_its_own_names_the_term(arch):
    stream = arch.digits(n=2)
    plugin = DEN()
    eng = arch.engine(arch.mlp(stream, (16,)), [plugin])
    arch.train_one(eng, stream, 0)
    plugin._penalty = lambda: torch.tensor(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"\['den.penalty'\] became non-finite in den's own training phase"):
        arch.train_one(eng, stream, 1)  # selective retraining's first phase trains the new head alone


def test_den_needs_a_plain_relu_mlp(arch):
    stream = arch.digits(n=1)
    with pytest.raises(IncompatibleError, match="mlp"):
        arch.engine(arch.mlp(stream, backbone="lenet", width=8), [DEN()]).run(stream)
    with pytest.raises(IncompatibleError, match="dropout"):
        arch.engine(arch.mlp(stream, (8,), dropout=0.1), [DEN()]).run(stream)
