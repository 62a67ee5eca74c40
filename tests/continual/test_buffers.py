"""Replay buffers: reservoir sampling equals algorithm R, balanced shares, herding, O(capacity) state."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from lifelong.continual.buffers import (
    BalancedBuffer,
    ReservoirBuffer,
    balanced_quotas,
    herding_select,
)
from lifelong.core.errors import CheckpointError, ConfigError, ShapeMismatchError

batches = st.lists(st.integers(1, 12), min_size=1, max_size=12)


def ids(n0: int, n: int) -> dict[str, torch.Tensor]:
    """Rows whose input is their stream position (so contents can be read back)."""
    pos = torch.arange(n0, n0 + n)
    return {"x": pos[:, None].float(), "y": pos % 3, "t": torch.zeros(n, dtype=torch.long)}


def fill_reservoir(capacity: int, sizes: list[int], seed: int) -> ReservoirBuffer:
    buffer, gen, seen = ReservoirBuffer(capacity), torch.Generator().manual_seed(seed), 0
    for n in sizes:
        buffer.add(ids(seen, n), gen)
        seen += n
    return buffer


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 20), sizes=batches, seed=st.integers(0, 2**16))
def test_reservoir_invariants_whatever_the_batches(capacity, sizes, seed):
    """Never above capacity, filled in stream order until full, then distinct items of the stream."""
    buffer = fill_reservoir(capacity, sizes, seed)
    held = buffer.view()["x"][:, 0].long().tolist()
    assert len(buffer) == len(held) == min(capacity, sum(sizes)) <= capacity
    assert buffer.data["x"].shape[0] == capacity
    if sum(sizes) <= capacity:
        assert held == list(range(sum(sizes)))
    assert len(set(held)) == len(held) and all(0 <= i < sum(sizes) for i in held)


def test_a_batch_without_an_accepted_item_draws_nothing():
    """Algorithm L: past the capacity a batch costs O(1) unless it holds the next accepted item."""
    buffer, gen = ReservoirBuffer(4), torch.Generator().manual_seed(0)
    buffer.add(ids(0, 10_000), gen)
    gap = buffer.next_item - buffer.seen
    assert gap > 0  # W ≈ 4 / 10 000: about 2 500 items to the next acceptance
    state, before = gen.get_state(), buffer.view()["x"].clone()
    buffer.add(ids(10_000, gap), gen)
    assert torch.equal(gen.get_state(), state) and torch.equal(buffer.view()["x"], before)
    buffer.add(ids(10_000 + gap, 1), gen)  # the next accepted item
    assert 10_000 + gap in buffer.view()["x"][:, 0].long().tolist()


def inclusion_counts(keep, trials: int, n: int, capacity: int, batch: int) -> torch.Tensor:
    counts = torch.zeros(n)
    gen = torch.Generator().manual_seed(123)
    for _ in range(trials):
        counts[keep(gen, n, capacity, batch)] += 1
    return counts


def reservoir_keep(gen, n, capacity, batch):
    buffer = ReservoirBuffer(capacity)
    for start in range(0, n, batch):
        buffer.add(ids(start, batch), gen)
    return buffer.view()["x"][:, 0].long()


def test_reservoir_inclusion_probability_is_uniform_over_the_stream():
    trials, n, capacity, batch = 600, 120, 12, 20
    counts = inclusion_counts(reservoir_keep, trials, n, capacity, batch)
    assert counts.sum() == trials * capacity
    # expected trials · capacity / n = 60 per item; chi-square over the 120 items of the stream
    assert chisquare(counts.numpy()).pvalue > 1e-3
    early, late = counts[: n // 2].mean(), counts[n // 2 :].mean()
    assert abs(early - late) < 0.1 * trials * capacity / n
    # negative control: keeping the last `capacity` of each batch's survivors is not uniform
    biased = inclusion_counts(lambda g, n_, c, b: torch.arange(n_ - c, n_), trials, n, capacity, batch)
    assert chisquare(biased.numpy()).pvalue < 1e-6


@pytest.mark.parametrize(("capacity", "n", "batch"), [(1, 2, 1), (1, 3, 3), (2, 5, 1), (3, 7, 7)])
def test_the_items_just_past_the_capacity_are_held_with_probability_k_over_n(capacity, n, batch):
    """Where algorithm L takes over from the filling: each of n items held in k / n of the trials."""
    counts = inclusion_counts(reservoir_keep, 3000, n, capacity, batch)
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_reservoir_inclusion_is_uniform_over_a_long_stream():
    """Over 2 000 items into 10 slots, in batches of 50, most acceptances come from algorithm L's
    gaps: each block of 100 consecutive items is held equally often."""
    trials, n, capacity, batch = 400, 2000, 10, 50
    counts = inclusion_counts(reservoir_keep, trials, n, capacity, batch)
    assert counts.sum() == trials * capacity
    blocks = counts.view(20, 100).sum(1)  # expected 200 per block
    assert chisquare(blocks.numpy()).pvalue > 1e-3
    assert abs(blocks[:10].mean() - blocks[10:].mean()) < 0.1 * 200


def test_a_buffer_saved_without_algorithm_ls_state_resumes_uniform():
    """Checkpoints from before algorithm L hold the rows and `seen` only: W is drawn afresh from its
    law at that position (Beta(k, n − k + 1)) and inclusion stays uniform over the whole stream."""
    def resumed(gen, n, capacity, batch):
        buffer = ReservoirBuffer(capacity)
        buffer.add(ids(0, n // 2), gen)
        state = {k: v for k, v in buffer.state_dict().items() if k not in ("next_item", "log_w")}
        buffer = ReservoirBuffer(1)
        buffer.load_state_dict(state)
        assert buffer.next_item == -1
        for start in range(n // 2, n, batch):
            buffer.add(ids(start, batch), gen)
        return buffer.view()["x"][:, 0].long()

    counts = inclusion_counts(resumed, 1500, 120, 6, 20)
    blocks = counts.view(12, 10).sum(1)  # expected 750 per block
    assert chisquare(blocks.numpy()).pvalue > 1e-3


def test_reservoir_contents_depend_only_on_the_seed():
    torch.manual_seed(1)
    a = fill_reservoir(10, [7] * 10, seed=5)
    torch.manual_seed(2)  # the global generator plays no part
    b = fill_reservoir(10, [7] * 10, seed=5)
    c = fill_reservoir(10, [7] * 10, seed=6)
    assert torch.equal(a.view()["x"], b.view()["x"])
    assert not torch.equal(a.view()["x"], c.view()["x"])


def test_memory_is_o_capacity_and_sampling_is_without_replacement():
    buffer, gen = ReservoirBuffer(16), torch.Generator().manual_seed(0)
    for start in range(0, 100_000, 5_000):
        buffer.add(ids(start, 5_000), gen)
    assert buffer.seen == 100_000 and len(buffer) == 16
    assert all(v.shape[0] == 16 for v in buffer.data.values())
    rows = buffer.sample(10, gen)["x"][:, 0]
    assert len(rows.unique()) == 10 and set(rows.tolist()) <= set(buffer.view()["x"][:, 0].tolist())
    assert len(buffer.sample(50, gen)["y"]) == 16


def test_state_dict_round_trip_continues_identically():
    a, gen_a = fill_reservoir(8, [5, 5], seed=3), torch.Generator().manual_seed(9)
    b = ReservoirBuffer(1)
    b.load_state_dict(a.state_dict())
    gen_b = torch.Generator()
    gen_b.set_state(gen_a.get_state())
    for buf, gen in ((a, gen_a), (b, gen_b)):
        buf.add(ids(10, 30), gen)
    assert b.capacity == 8 and b.seen == a.seen == 40
    for k in a.data:
        assert torch.equal(a.view()[k], b.view()[k])


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 40), n_groups=st.integers(1, 6), order=st.randoms(use_true_random=False))
def test_balanced_shares_are_equal_within_one_and_rings_keep_the_newest(capacity, n_groups, order):
    """Every class offers more than the capacity, in shuffled batches; shares stay equal within one."""
    labels = [g for g in range(n_groups) for _ in range(capacity + 3)]
    order.shuffle(labels)
    buffer, offered = BalancedBuffer(capacity), {g: [] for g in range(n_groups)}
    for start in range(0, len(labels), 7):
        y = torch.tensor(labels[start : start + 7])
        rows = {"x": torch.arange(start, start + len(y))[:, None].float(), "y": y, "t": torch.zeros_like(y)}
        for i, g in zip(rows["x"][:, 0].long().tolist(), y.tolist(), strict=True):
            offered[g].append(i)
        before = buffer.counts()
        buffer.add(rows, y)
        held = buffer.counts()
        assert len(buffer) == min(capacity, start + len(y)) <= capacity
        for g, n in held.items():  # a group that lost rows holds within one of the largest share
            if n < before.get(g, 0) + int((y == g).sum()):
                assert n >= max(held.values()) - 1
    assert max(held.values()) - min(held.values()) <= 1 and len(held) == min(n_groups, capacity)
    held = buffer.view()
    for g in range(n_groups):
        mine = sorted(held["x"][held["y"] == g][:, 0].long().tolist())
        assert mine == offered[g][len(offered[g]) - len(mine) :]  # the newest of its class


@settings(max_examples=80, deadline=None)
@given(counts=st.lists(st.integers(0, 30), min_size=1, max_size=8), capacity=st.integers(1, 60))
def test_balanced_quotas_water_fill(counts, capacity):
    c = torch.tensor(counts)
    q = balanced_quotas(c, capacity)
    assert int(q.sum()) == min(capacity, sum(counts))
    assert bool((q <= c).all())
    short = q < c  # groups that could use more space get shares equal within one of the largest
    if short.any():
        assert int(q[short].min()) >= int(q.max()) - 1


def test_balanced_by_task_shrinks_old_shares_as_tasks_arrive():
    buffer = BalancedBuffer(12)
    for task in range(4):
        y = torch.full((20,), task)
        buffer.add({"x": torch.randn(20, 2), "y": y, "t": y}, y)
        assert buffer.counts() == {t: 12 // (task + 1) for t in range(task + 1)}


def test_herding_matches_a_hand_worked_example():
    # mean 3.25: pick 2 (|2−3.25|); then (2+x)/2 nearest 3.25 → 1; then (3+x)/3 → 10; then 0
    f = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    assert herding_select(f, 4).tolist() == [2, 1, 3, 0]
    assert herding_select(f, 2).tolist() == [2, 1]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), m=st.integers(1, 45), seed=st.integers(0, 1000))
def test_herding_equals_the_greedy_definition(n, m, seed):
    """Each pick brings the running mean of the chosen closest to the class mean (ties either way)."""
    f = torch.nn.functional.normalize(torch.randn(n, 5, generator=torch.Generator().manual_seed(seed)), dim=1)
    f = f.double()
    picked = herding_select(f, m).tolist()
    assert len(picked) == min(m, n) == len(set(picked))
    mu = f.mean(0)
    for k, choice in enumerate(picked, 1):
        base = f[picked[: k - 1]].sum(0)
        dist = ((mu - (base + f) / k) ** 2).sum(1)
        dist[picked[: k - 1]] = float("inf")
        assert dist[choice] <= dist.min() + 1e-12


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(ConfigError, match="capacity"):
        ReservoirBuffer(0)
    buffer, gen = ReservoirBuffer(4), torch.Generator()
    buffer.add(ids(0, 3), gen)
    with pytest.raises(ShapeMismatchError, match="per-sample shape"):
        buffer.add({"x": torch.zeros(2, 3), "y": torch.zeros(2, dtype=torch.long),
                    "t": torch.zeros(2, dtype=torch.long)}, gen)
    with pytest.raises(ShapeMismatchError, match="fields"):
        buffer.add({"x": torch.zeros(2, 1), "y": torch.zeros(2, dtype=torch.long)}, gen)
    with pytest.raises(ShapeMismatchError, match="row counts"):
        buffer.add({"x": torch.zeros(2, 1), "y": torch.zeros(3, dtype=torch.long),
                    "t": torch.zeros(2, dtype=torch.long)}, gen)
    with pytest.raises(ShapeMismatchError, match=r"\(n, d\)"):
        herding_select(torch.zeros(3), 2)
    with pytest.raises(ConfigError, match="m must be a number of exemplars >= 0, got -1"):
        herding_select(torch.zeros(3, 2), -1)
    assert herding_select(torch.zeros(3, 2), 0).tolist() == []
    for capacity in (2.5, "abc", True):
        with pytest.raises(ConfigError, match="capacity"):
            BalancedBuffer(capacity)


def more_rows(state: dict) -> None:
    """Five stored rows (and size 5) for a buffer of capacity 4."""
    state["data"] = {k: torch.cat([v, v[:2]]) for k, v in state["data"].items()}
    state["size"] = 5


@pytest.mark.parametrize("edit", [
    more_rows,
    lambda st: st.__setitem__("capacity", 2),  # the 3 stored rows do not fit in 2
    lambda st: st.__setitem__("size", 2),      # the size disagrees with the 3 stored rows
])
def test_a_checkpoint_that_does_not_fit_its_buffer_is_refused(edit):
    state = fill_reservoir(4, [3], seed=0).state_dict()
    edit(state)
    with pytest.raises(CheckpointError, match="do not fit together"):
        ReservoirBuffer(4).load_state_dict(state)


def test_rows_are_stored_detached_in_the_buffers_dtype():
    buffer, gen = ReservoirBuffer(4), torch.Generator().manual_seed(0)
    logits = torch.ones(2, 3, requires_grad=True) * 2  # e.g. DER's logits, still in a graph
    buffer.add({"x": torch.zeros(2, 3), "logits": logits}, gen)
    buffer.add({"x": torch.full((2, 3), 0.5, dtype=torch.float64), "logits": logits.double()}, gen)
    rows = buffer.view()
    assert rows["x"].dtype == torch.float32 and rows["x"][2:].eq(0.5).all()
    assert not rows["logits"].requires_grad and rows["logits"].eq(2).all()
    assert not buffer.sample(4, gen)["logits"].requires_grad
