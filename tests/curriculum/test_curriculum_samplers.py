"""Curriculum sampler: only examples ranked within the allowed fraction, anti = complement order."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from lifelong.core.errors import ConfigError, DataError
from lifelong.curriculum.baby_step import BabyStep
from lifelong.curriculum.pacing import Linear
from lifelong.curriculum.samplers import CurriculumSampler, allowed_count, difficulty_order

scores_st = st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=60)


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each example, easiest = 0 (stable for ties)."""
    out = torch.empty(len(scores), dtype=torch.long)
    out[torch.argsort(scores, stable=True)] = torch.arange(len(scores))
    return out


@settings(max_examples=80)
@given(values=scores_st, t=st.floats(0, 12), c0=st.floats(0.01, 1.0), seed=st.integers(0, 2**31))
def test_yields_only_examples_ranked_within_the_fraction(values, t, c0, seed):
    scores = torch.tensor(values)
    sampler = CurriculumSampler(scores, Linear(c0=c0), total=10,
                                generator=torch.Generator().manual_seed(seed))
    sampler.set_time(t)
    got = torch.tensor(list(sampler))
    k = allowed_count(len(values), c0 + (1 - c0) * min(t / 10, 1.0))
    assert len(got) == len(sampler) == k
    assert len(set(got.tolist())) == k                      # each allowed example exactly once
    assert bool((ranks(scores)[got] < k).all())             # and nothing harder


@given(values=st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=60, unique=True))
def test_anti_curriculum_is_the_complement_order(values):
    scores = torch.tensor(values, dtype=torch.float64)
    easy, hard = difficulty_order(scores), difficulty_order(scores, anti=True)
    assert torch.equal(hard, easy.flip(0))
    assert torch.equal(hard, torch.argsort(scores, descending=True))


def test_anti_allowed_set_is_complement_of_the_easy_one():
    scores = torch.randperm(20).float()
    anti = CurriculumSampler(scores, Linear(c0=0.25), total=4, anti=True)
    easy = CurriculumSampler(scores, Linear(c0=0.75), total=4)
    assert set(anti.allowed().tolist()) == set(range(20)) - set(easy.allowed().tolist())
    assert set(anti.allowed().tolist()) == set(torch.argsort(scores)[15:].tolist())  # hardest 5


def test_fraction_follows_the_pacing_and_set_epoch_alias():
    sampler = CurriculumSampler(torch.arange(40.0), Linear(c0=0.25), total=4)
    counts = []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        counts.append(len(sampler))
    assert counts == [10, 18, 25, 33, 40, 40]  # ⌈40·(0.25 + 0.75·e/4)⌉
    sampler.set_epoch(0)
    assert torch.equal(sampler.allowed(), torch.arange(10))


def test_order_is_seeded_and_changes_between_passes():
    def sampler(seed):
        return CurriculumSampler(torch.arange(50.0), Linear(c0=1.0), 1,
                                 generator=torch.Generator().manual_seed(seed))

    a, b = sampler(3), sampler(3)
    first, second = list(a), list(a)
    assert first == list(b) and second == list(b)
    assert first != second and sorted(first) == sorted(second) == list(range(50))
    assert first != list(sampler(4))


def test_works_as_a_dataloader_sampler():
    x = torch.arange(30.0)[:, None]
    loader = DataLoader(TensorDataset(x), batch_size=4,
                        sampler=CurriculumSampler(30 - torch.arange(30.0), Linear(c0=0.2), 5))
    seen = torch.cat([b[0] for b in loader]).flatten()
    assert sorted(seen.tolist()) == list(range(24, 30))  # scores 30 − i: the last 6 are easiest


def test_balanced_order_keeps_classes_in_proportion():
    labels = torch.tensor([0] * 30 + [1] * 10)
    scores = torch.cat([torch.rand(30), torch.rand(10) + 5.0])  # class 1 is harder overall
    order = difficulty_order(scores, labels=labels)
    prefix = labels[order[:20]]
    assert int((prefix == 1).sum()) == 5  # a quarter of the examples → a quarter of the prefix
    # within each class the prefix holds its easiest examples
    assert set(order[:20][prefix == 1].tolist()) == set((30 + torch.argsort(scores[30:])[:5]).tolist())
    unbalanced = labels[difficulty_order(scores)[:20]]
    assert int((unbalanced == 1).sum()) == 0


def test_allowed_count_bounds():
    assert allowed_count(10, 0.3) == 3  # not 4 from 0.30000000000000004·10
    assert allowed_count(10, 0.01) == 1
    assert allowed_count(10, 1.0) == 10
    assert allowed_count(7, 0.5) == 4


def test_bad_scores_raise_typed_errors():
    with pytest.raises(DataError, match="NaN"):
        difficulty_order(torch.tensor([0.0, float("nan")]))
    with pytest.raises(DataError, match="1-D"):
        difficulty_order(torch.zeros(2, 2))
    with pytest.raises(DataError, match="labels"):
        difficulty_order(torch.zeros(3), labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="total"):
        CurriculumSampler(torch.zeros(3), Linear(), total=0)


class TestBabyStep:
    def test_starts_with_the_easiest_bucket(self):
        steps = BabyStep(torch.arange(20.0).flip(0), n_buckets=4)
        assert sorted(steps.indices().tolist()) == [15, 16, 17, 18, 19]

    def test_advances_only_after_patience_evaluations_without_improvement(self):
        steps = BabyStep(torch.arange(20.0), n_buckets=4, patience=2, min_delta=0.01)
        assert [steps.observe(v) for v in (1.0, 0.8, 0.795, 0.9)] == [False, False, False, True]
        assert steps.stage == 1 and len(steps) == 10
        assert [steps.observe(v) for v in (0.7, 0.6, 0.5)] == [False, False, False]
        assert steps.stage == 1

    def test_stops_at_the_last_bucket_and_round_trips(self):
        steps = BabyStep(torch.arange(9.0), n_buckets=3, patience=1)
        for v in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0):
            steps.observe(v)
        assert steps.done and len(steps) == 9
        other = BabyStep(torch.arange(9.0), n_buckets=3, patience=1)
        other.load_state_dict(steps.state_dict())
        assert other.stage == 2 and len(other) == 9

    def test_bad_arguments(self):
        with pytest.raises(ConfigError):
            BabyStep(torch.arange(3.0), n_buckets=0)
        with pytest.raises(DataError):
            BabyStep(torch.arange(3.0)).observe(float("nan"))
