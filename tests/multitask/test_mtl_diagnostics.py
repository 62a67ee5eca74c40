"""Gradient-conflict statistics, lookahead task affinity and grouping, Δm — on hand values."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from lifelong.core.errors import ConfigError, DataError
from lifelong.multitask.architectures import HardSharing
from lifelong.multitask.diagnostics import (
    AffinityTracker,
    ConflictMonitor,
    best_grouping,
    cosine_matrix,
    delta_m,
    grouping_score,
    lookahead_affinity,
    partitions,
    transfer_report,
)


def test_cosine_matrix_by_hand():
    jac = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    r = 2**-0.5
    expected = torch.tensor([[1.0, r, -1.0], [r, 1.0, -r], [-1.0, -r, 1.0]])
    torch.testing.assert_close(cosine_matrix(jac), expected)


def test_conflict_monitor_ratio_and_persistent_warning(caplog):
    mon = ConflictMonitor(["a", "b", "c"], threshold=-0.1, patience=3)
    agree = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    fight = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])
    with caplog.at_level(logging.WARNING, logger="lifelong.multitask"):
        mon.update(agree, 0)
        for step in range(1, 3):
            mon.update(fight, step)
        assert mon.warnings == []  # two records below −0.1 after an agreeing one
        mon.update(fight, 3)
        mon.update(fight, 4)
    s = mon.summary()
    assert [w["tasks"] for w in mon.warnings] == [["a", "b"]] and mon.warnings[0]["step"] == 3
    assert "tasks 'a' and 'b'" in caplog.text
    assert s["conflict_ratio"][0][1] == pytest.approx(4 / 5)
    assert s["conflict_ratio"][0][2] == 0.0  # orthogonal is not a conflict
    assert s["overall_conflict_ratio"] == pytest.approx((4 / 5 + 0 + 0) / 3)
    restored = ConflictMonitor(["a", "b", "c"], patience=3)
    restored.load_state_dict(mon.state_dict())
    assert restored.summary() == s


def test_lookahead_affinity_on_a_scalar_toy():
    """w = 0, L_a = (w − 1)², L_b = (w + 1)², lr 0.25: a's step moves w to 0.5, so
    Z_{a→a} = 1 − 0.25/1 = 0.75 and Z_{a→b} = 1 − 2.25/1 = −1.25 (symmetric for b)."""
    trunk = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(trunk.weight)
    model = HardSharing(lambda: trunk, {"a": nn.Identity(), "b": nn.Identity()})
    x = torch.ones(1, 1)

    def losses(out):
        return torch.stack([(out["a"] - 1).pow(2).mean(), (out["b"] + 1).pow(2).mean()])

    z = lookahead_affinity(model, x, losses, lr=0.25)
    torch.testing.assert_close(z, torch.tensor([[0.75, -1.25], [-1.25, 0.75]]))
    assert float(trunk.weight.detach()) == 0.0  # the lookahead leaves the model untouched
    tracker = AffinityTracker(2)
    with pytest.raises(DataError):
        tracker.mean()
    tracker.update(z)
    tracker.update(torch.zeros(2, 2))
    torch.testing.assert_close(tracker.mean(), z.double() / 2)


def test_partitions_count_is_a_stirling_number():
    assert sum(1 for _ in partitions(4, 2)) == 7
    assert sum(1 for _ in partitions(5, 3)) == 25
    assert list(partitions(3, 3)) == [[[0], [1], [2]]]


def test_best_grouping_pairs_the_tasks_that_help_each_other():
    z = torch.tensor([[0.0, 0.5, -0.2, -0.1],
                      [0.4, 0.0, -0.3, 0.0],
                      [-0.1, -0.2, 0.0, 0.3],
                      [0.0, -0.1, 0.2, 0.0]])
    groups, score = best_grouping(z, 2)
    assert groups == [[0, 1], [2, 3]]
    assert score == pytest.approx(0.4 + 0.5 + 0.2 + 0.3)  # Z_{1→0} + Z_{0→1} + Z_{3→2} + Z_{2→3}
    assert grouping_score(z, [[0], [1], [2], [3]]) == 0.0
    with pytest.raises(ConfigError):
        best_grouping(z, 5)


def test_delta_m_by_hand():
    mtl = {"acc": 0.9, "mse": 0.5}
    single = {"acc": 0.8, "mse": 0.4}
    higher = {"acc": True, "mse": False}
    # 100/2 · ((0.9 − 0.8)/0.8 − (0.5 − 0.4)/0.4) = 50 · (0.125 − 0.25)
    assert delta_m(mtl, single, higher) == pytest.approx(-6.25)
    report = transfer_report(mtl, single, higher)
    assert report["tasks"]["acc"]["change_percent"] == pytest.approx(12.5)
    assert report["tasks"]["mse"]["change_percent"] == pytest.approx(-25.0)
    assert [t["negative_transfer"] for t in report["tasks"].values()] == [False, True]
