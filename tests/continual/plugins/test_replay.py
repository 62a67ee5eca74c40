"""Experience replay: batch extension, online reservoir / per-experience balanced updates, learning, resume."""

import pytest
import torch

from lifelong.continual.plugin import Batch
from lifelong.continual.plugins.replay import Replay, append_term
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError
from lifelong.data.scenarios import permuted
from lifelong.data.sources import load_source


class Recorder(Replay):
    """Replay that records the batches it hands to the engine."""

    name = "replay"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.batches = []

    def extend_batch(self, ctx, batch):
        out = super().extend_batch(ctx, batch)
        self.batches.append((ctx.index, out))
        return out


def test_aliases_resolve_to_replay():
    for name in ("replay", "er", "experience_replay", "ER"):
        (plugin,) = build_strategy(name, {"buffer_size": 7})
        assert isinstance(plugin, Replay) and plugin.buffer.capacity == 7


def test_reservoir_replay_extends_every_batch_and_sees_the_whole_stream(engine_on, digits):
    rec = Recorder(buffer_size=50, replay_batch_size=8, weight=0.5)
    engine_on(digits, [rec]).run(digits)
    first = [b for i, b in rec.batches if i == 0]
    assert len(first[0]) == 32 and first[0].weight is None  # the very first batch: empty memory
    later = [b for i, b in rec.batches[1:]]
    assert all(len(b) == b.n_current + 8 for b in later)
    assert all(torch.equal(b.weight[b.n_current:], torch.full((8,), 0.5)) for b in later)
    # after the first experience every replay batch holds past classes (the memory spans the stream)
    past = [b.y[b.n_current:] for i, b in rec.batches if i == 4]
    assert all((y < 8).any() for y in past)
    assert rec.buffer.seen == sum(e.n_train for e in digits) and len(rec.buffer) == 50


@pytest.mark.parametrize("policy,groups", [("class_balanced", 6), ("task_balanced", 3)])
def test_balanced_policies_fill_equal_shares_at_each_experience_end(engine_on, digits, policy, groups):
    plugin = Replay(buffer_size=50, policy=policy)
    sizes = []
    stream = digits[:3]
    engine_on(stream, [plugin]).run(stream, on_experience_end=lambda i, e: sizes.append(len(plugin.buffer)))
    counts = plugin.buffer.counts()
    if policy == "class_balanced":  # a group per (experience, class): index · n_classes + class
        counts = {(g // stream.n_classes, g % stream.n_classes): c for g, c in counts.items()}
        assert sorted(counts) == [(i, c) for i in range(3) for c in stream[i].classes]
    else:
        assert sorted(counts) == list(range(groups))
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sizes == [50, 50, 50]
    if policy == "task_balanced":
        rows = plugin.buffer.view()
        assert all(set(rows["y"][rows["group"] == g].tolist()) <= set(stream[g].classes) for g in range(3))


def test_class_balanced_memory_keeps_every_domain_of_a_class(engine_on):
    """Permuted digits, domain-incremental: every experience has the same ten classes, and the
    memory keeps an equal share of each class from each experience, not only from the last."""
    stream = permuted(load_source("digits"), "domain", n_experiences=3)
    plugin = Replay(buffer_size=60, policy="class_balanced")
    engine_on(stream, [plugin]).run(stream)
    groups = plugin.buffer.view()["group"]
    per_experience = torch.bincount(groups // stream.n_classes, minlength=3)
    assert per_experience.tolist() == [20, 20, 20]
    assert torch.bincount(groups % stream.n_classes, minlength=10).tolist() == [6] * 10


def test_append_term_gives_each_part_its_own_mean():
    batch = Batch(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    out = append_term(batch, torch.zeros(2, 1), torch.ones(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                      weight=0.6, current=0.4)
    ce = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0, 20.0])
    assert torch.allclose(out.mean(ce), torch.tensor(0.4 * 2.5 + 0.6 * 15.0))
    assert out.n_current == 4
    # appended to an already weighted batch, each part keeps its own weighted mean
    twice = append_term(out, torch.zeros(1, 1), torch.ones(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                        weight=0.5, current=0.5)
    assert torch.allclose(twice.mean(torch.cat([ce, torch.tensor([7.0])])), torch.tensor(0.5 * 10.0 + 0.5 * 7.0))


@pytest.mark.parametrize("spec", ["replay+der", "der+replay", "replay+der++", "der+++replay"])
def test_the_cross_entropy_does_not_depend_on_the_order_of_the_strategies(engine_on, digits, spec):
    """Replay's rows join the current ones in one mean whichever strategy appends first; DER's
    memory rows add nothing to the cross-entropy."""
    engine = engine_on(digits[:2], build_strategy(spec))
    engine.run(digits[:1])
    ctx = engine.context(digits, 1)
    exp = digits[1]
    batch = Batch(exp.train_x[:8], exp.train_y[:8], exp.train_t()[:8], index=torch.arange(8))
    for plugin in engine._structure_last():
        batch = plugin.extend_batch(ctx, batch)
    der_rows = {r for key in ("der.mse_rows", "der.ce_rows") for r in batch.extra.get(key, torch.tensor([])).tolist()}
    replayed = [i for i in range(8, len(batch)) if i not in der_rows]
    ce = torch.rand(len(batch), generator=torch.Generator().manual_seed(0))
    assert len(replayed) == 8
    torch.testing.assert_close(batch.mean(ce), ce[[*range(8), *replayed]].mean())


def test_append_keeps_the_plain_mean_while_every_weight_is_one():
    batch = Batch(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    rows = (torch.ones(2, 1), torch.ones(2, dtype=torch.long), torch.ones(2, dtype=torch.long))
    plain = batch.append(*rows)
    assert plain.weight is None and len(plain) == 6 and plain.n_current == 4
    assert plain.x[4:].eq(1).all() and plain.y[:4].eq(0).all()
    weighted = plain.append(*rows, weight=0.5)
    assert weighted.weight.tolist() == [1.0] * 6 + [0.5] * 2 and weighted.n_current == 4


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="policy"):
        Replay(policy="fifo")
    with pytest.raises(ConfigError, match="buffer_size"):
        Replay(buffer_size=0)
    with pytest.raises(ConfigError, match="unknown keys"):
        build_strategy("replay", {"mem_size": 10})


@pytest.mark.parametrize("strategy,key,value", [
    ("replay", "replay_batch_size", 2.5), ("replay", "buffer_size", "abc"), ("replay", "buffer_size", True),
    ("der", "buffer_size", 2.5), ("derpp", "replay_batch_size", 0), ("gem", "patterns_per_experience", 2.5),
    ("agem", "patterns_per_experience", "abc"), ("agem", "sample_size", 2.5),
])
def test_counts_must_be_positive_integers_when_the_strategy_is_built(strategy, key, value):
    with pytest.raises(ConfigError, match=f"{key} must be a positive integer( or None)?, got {value!r}"):
        build_strategy(strategy, {key: value})


@pytest.mark.parametrize("strategy", ["replay", "der", "derpp", "gem", "agem", "icarl", "generative"])
def test_every_replay_strategy_resumes_bit_exactly_from_a_state_dict(digits, strategy, tmp_path, replay):
    args = {"gem": {"patterns_per_experience": 20}, "agem": {"patterns_per_experience": 20, "sample_size": 16},
            "icarl": {"memory_size": 60}, "generative": {"hidden": 32, "latent": 8}}.get(strategy, {"buffer_size": 60})
    (full, weights), (resumed, resumed_weights) = replay.engine_resume(digits, strategy, args, 2, tmp_path / "state.pt")
    assert resumed == full
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)


def test_replay_beats_naive_by_a_quarter_on_split_fashion_mnist(replay):
    naive = replay.acc("naive")
    assert naive < 0.25  # class-incremental fine-tuning keeps only the last experience
    assert replay.acc("replay", buffer_size=replay.BUFFER) >= naive + 0.25
    assert replay.acc("replay", buffer_size=replay.BUFFER, policy="class_balanced") >= naive + 0.25


def test_replay_resumes_bit_exactly_through_run(tmp_path, interrupted_run, replay):
    out = replay.resume_through_run(tmp_path, interrupted_run, "replay", {"buffer_size": 200})
    assert out["resumed"]["accuracy_matrix"] == out["full"]["accuracy_matrix"]
    full, resumed = out["full_state"]["plugins"][0]["buffer"], out["resumed_state"]["plugins"][0]["buffer"]
    assert full["seen"] == resumed["seen"]
    assert all(torch.equal(full["data"][k], resumed["data"][k]) for k in full["data"])
    assert torch.equal(out["full_state"]["generator"], out["resumed_state"]["generator"])
    # negative controls: the buffer and the generator state each matter to the result
    assert out["mid_state"]["plugins"][0]["buffer"]["seen"] < full["seen"]
    assert out["no_buffer"]["accuracy_matrix"] != out["full"]["accuracy_matrix"]
    assert out["other_generator"]["accuracy_matrix"] != out["full"]["accuracy_matrix"]
