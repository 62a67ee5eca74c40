"""Gradient-conflict statistics, lookahead task affinity and grouping, Δm — on hand values."""

from __future__ import annotations

import itertools
import logging
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lifelong.core.errors import ConfigError, DataError, IncompatibleError, ShapeMismatchError
from lifelong.multitask.architectures import HardSharing, build_architecture
from lifelong.multitask.diagnostics import (
    AffinityTracker,
    ConflictMonitor,
    best_grouping,
    cosine_matrix,
    delta_m,
    grouping_score,
    lookahead_affinity,
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


def test_conflict_monitor_counts_each_pair_over_the_records_that_held_it():
    """A task sampler draws some tasks a step: a pair's statistics are over the records holding both
    (they were not recorded at all unless every task was drawn, and the summary read 0.0 conflict);
    an absent pair keeps its run of conflicting records; a pair never drawn together is NaN, and
    with no pair recorded the overall ratio is None."""
    mon = ConflictMonitor(["a", "b", "c"], threshold=-0.1, patience=2)
    fight = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])
    ab, bc = torch.tensor([True, True, False]), torch.tensor([False, True, True])
    mon.update(fight, 0, ab)
    mon.update(fight, 1, bc)  # a absent: (a, b) keeps its run of 1
    assert mon.warnings == []
    mon.update(fight, 2, ab)
    assert [w["tasks"] for w in mon.warnings] == [["a", "b"]]
    s = mon.summary()
    assert s["records"] == 3 and s["pair_records"][0][1] == 2 and s["pair_records"][1][2] == 1
    assert s["conflict_ratio"][0][1] == 1.0 and s["conflict_ratio"][1][2] == 0.0
    assert math.isnan(s["conflict_ratio"][0][2]) and math.isnan(s["mean_cosine"][0][2])
    assert s["overall_conflict_ratio"] == pytest.approx(0.5)  # over the two pairs recorded
    alone = ConflictMonitor(["a", "b"])
    alone.update(fight[:2], 0, torch.tensor([True, False]))
    assert alone.summary()["overall_conflict_ratio"] is None


def test_sampled_per_task_steps_feed_the_conflict_monitor(mtl):
    tr = mtl.trainer(mtl.toy_per_task(), sampler="equal", tasks_per_step=2, conflict_every=1)
    tr.fit()
    s = tr.monitor.summary()
    assert s["records"] == tr.step and 0 < s["pair_records"][0][1] < tr.step


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


def test_lookahead_affinity_probes_one_function_and_changes_nothing():
    """With dropout and BatchNorm in the trunk and lr = 0, every lookahead loss equals the loss
    before it (Z = 0 exactly); BatchNorm's statistics and the training mode are left as found."""
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
    model = HardSharing(lambda: trunk, {"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)}).train()
    x = torch.randn(16, 3)

    def losses(out):
        return torch.stack([out["a"].pow(2).mean(), (out["b"] - 1).pow(2).mean()])

    stats = {k: v.clone() for k, v in trunk[1].state_dict().items()}
    z = lookahead_affinity(model, x, losses, lr=0.0)
    assert torch.equal(z, torch.zeros(2, 2))
    assert all(torch.equal(v, trunk[1].state_dict()[k]) for k, v in stats.items())
    assert model.training and trunk[3].training


def test_best_grouping_pairs_the_tasks_that_help_each_other():
    z = torch.tensor([[0.0, 0.5, -0.2, -0.1],
                      [0.4, 0.0, -0.3, 0.0],
                      [-0.1, -0.2, 0.0, 0.3],
                      [0.0, -0.1, 0.2, 0.0]])
    groups, score = best_grouping(z, 2)
    assert groups == [[0, 1], [2, 3]]
    assert score == pytest.approx((0.4 + 0.5 + 0.2 + 0.3) / 4)  # Z_{1→0}, Z_{0→1}, Z_{3→2}, Z_{2→3}
    # one group holds every task: the mean affinity onto each task from the other three
    assert best_grouping(z, 1) == ([[0, 1, 2, 3]], pytest.approx(((0.4 - 0.1) + (0.5 - 0.2 - 0.1)
                                                                 + (-0.2 - 0.3 + 0.2) + (-0.1 + 0.3)) / 12))
    with pytest.raises(ConfigError, match="n_groups=5"):
        best_grouping(z, 5)
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        best_grouping(torch.zeros(1, 1), 1)
    with pytest.raises(ShapeMismatchError, match=r"\(k × k\), got \(2, 3\)"):
        best_grouping(torch.zeros(2, 3), 1)
    with pytest.raises(DataError, match="NaN or infinite"):
        best_grouping(torch.tensor([[0.0, float("nan")], [0.2, 0.0]]), 1)


def test_best_grouping_lets_groups_overlap_as_tag_does():
    """B helps A and C, which hurt each other: TAG trains {A, B} and {B, C}, each task scoring
    0.5 from its best group; no split into two disjoint groups does as well."""
    z = torch.tensor([[0.0, 0.5, -0.5], [0.5, 0.0, 0.5], [-0.5, 0.5, 0.0]])
    assert best_grouping(z, 2) == ([[0, 1], [1, 2]], pytest.approx(0.5))
    assert grouping_score(z, [[0, 1], [2, 1]]) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match=r"tasks \[2\] are in no group"):
        grouping_score(z, [[0, 1], [2]])


def test_grouping_score_checks_its_affinity_matrix_and_task_indices():
    """The checks best_grouping makes, and task indices within 0..k-1 (an index past the end used to
    fail inside the 2^k table with a bitmask for an index)."""
    z = torch.tensor([[0.0, 0.5, -0.5], [0.5, 0.0, 0.5], [-0.5, 0.5, 0.0]])
    with pytest.raises(ShapeMismatchError, match=r"\(k × k\), got \(3, 4\)"):
        grouping_score(torch.zeros(3, 4), [[0, 1]])
    with pytest.raises(DataError, match="NaN or infinite"):
        grouping_score(torch.full((3, 3), float("nan")), [[0, 1, 2]])
    with pytest.raises(ConfigError, match=r"task indices \[5, -1\] are not in 0..2"):
        grouping_score(z, [[0, 5], [1, -1, 2]])
    with pytest.raises(ConfigError, match=r"tasks \[0, 1, 2\] are in no group"):
        grouping_score(z, [])


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 5), n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_best_grouping_matches_a_search_over_every_selection(k, n, seed):
    """The dynamic programme finds the best of every selection of at most n groups of two or
    more tasks that covers all tasks (TAG's exhaustive network selection)."""
    n = min(n, k)
    z = torch.randn(k, k, generator=torch.Generator().manual_seed(seed))
    candidates = [g for size in range(2, k + 1) for g in itertools.combinations(range(k), size)]
    best = max(grouping_score(z, chosen) for m in range(1, n + 1)
               for chosen in itertools.combinations(candidates, m)
               if set().union(*chosen) == set(range(k)))
    groups, score = best_grouping(z, n)
    assert len(groups) <= n and all(len(g) >= 2 for g in groups)
    assert score == pytest.approx(best, abs=1e-12)
    assert grouping_score(z, groups) == score


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


def test_lookahead_affinity_refuses_a_model_sharing_no_parameter(mtl):
    """Soft sharing: it failed inside `jacobian` ("no parameters given; pass the shared parameters")."""
    data = mtl.toy_shared()
    model = build_architecture("soft", data, lambda: mtl.mlp(6))
    with pytest.raises(IncompatibleError, match="SoftSharing shares no parameter"):
        lookahead_affinity(model, data.splits["a"].train_x[:8], lambda out: torch.stack(
            [out[t].float().pow(2).mean() for t in data.task_names]), 0.1)
