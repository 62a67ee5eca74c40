"""iCaRL: the loss by hand, herding exemplars split evenly over classes, nearest-mean prediction."""

import math

import pytest
import torch
import torch.nn.functional as F

from lifelong.continual.buffers import herding_select
from lifelong.continual.engine import Engine
from lifelong.continual.plugin import Plugin
from lifelong.continual.plugins.icarl import ICaRL, icarl_loss, nearest_mean_scores
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.seeding import seed_everything
from lifelong.data.scenarios import permuted, split
from lifelong.data.sources import load_source
from lifelong.models import build_model


def bce(z, target):
    p = 1 / (1 + math.exp(-z))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_loss_matches_a_hand_computation():
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0], [1.5, 0.3, -0.7, 0.0]])
    old_logits = torch.tensor([[1.0, -2.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    y = torch.tensor([2, 0])
    old = torch.tensor([True, True, False, False])
    new = torch.tensor([False, False, True, True])
    cls, distill = icarl_loss(logits, y, old_logits, old, new)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    want_cls = (bce(2.0, 1) + bce(0.0, 0) + bce(-0.7, 0) + bce(0.0, 0)) / 2
    want_distill = (bce(0.5, sig(1.0)) + bce(-1.0, sig(-2.0)) + bce(1.5, sig(0.0)) + bce(0.3, sig(2.0))) / 2
    assert cls.item() == pytest.approx(want_cls, rel=1e-6)
    assert distill.item() == pytest.approx(want_distill, rel=1e-6)
    assert icarl_loss(logits, y, None, old, new)[1].item() == 0.0


def test_nearest_mean_scores_by_hand():
    means = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    scores = nearest_mean_scores(torch.tensor([[3.0, 4.0]]), means, torch.tensor([True, True, False]))
    assert scores[0, 0].item() == pytest.approx(-math.sqrt(0.8))
    assert scores[0, 1].item() == pytest.approx(-math.sqrt(0.4))
    assert scores[0, 2].item() == torch.finfo(torch.float32).min


class Snapshot(Plugin):
    """After iCaRL's after_experience: the memory, the model and iCaRL's previous-model copy."""

    name = "snapshot"

    def __init__(self, icarl):
        self.icarl, self.memory, self.states, self.terms = icarl, [], [], []

    def loss_terms(self, ctx, batch, outputs):
        self.terms.append((ctx.index, self.icarl.loss_terms(ctx, batch, outputs), batch.weight))
        return {}

    def after_experience(self, ctx):
        self.memory.append({k: v.clone() for k, v in self.icarl.buffer.view().items()})
        self.states.append({k: v.clone() for k, v in ctx.model.state_dict().items()})


@pytest.fixture(scope="module")
def trained():
    stream = split(load_source("digits"), "class")
    icarl = ICaRL(memory_size=60)
    snap = Snapshot(icarl)
    generator = seed_everything(0)
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(32,))
    engine = Engine(model, [icarl, snap], epochs=2, batch_size=32, generator=generator)
    engine.run(stream)
    return stream, icarl, snap, engine


def test_exemplars_are_split_evenly_and_reduced_to_their_first_herding_picks(trained):
    stream, icarl, snap, _ = trained
    for k, memory in enumerate(snap.memory):
        seen = 2 * (k + 1)
        counts = torch.bincount(memory["y"], minlength=seen)
        assert len(counts) == seen and int(counts.sum()) == 60
        assert int(counts.max() - counts.min()) <= 1
        for c in range(seen):  # priorities are minus the herding rank: a class keeps ranks 0..m-1
            ranks = sorted((-memory["priority"][memory["y"] == c]).tolist())
            assert ranks == list(range(int(counts[c])))


def test_new_exemplars_are_the_herding_choice_of_the_trained_model(trained):
    stream, icarl, snap, engine = trained
    model = engine.model
    model.load_state_dict(snap.states[0])
    model.eval()
    exp, memory = stream[0], snap.memory[0]
    for c in exp.classes:
        x = exp.train_x[exp.train_y == c]
        with torch.no_grad():
            order = herding_select(F.normalize(model.features(x), dim=1), 30)
        mine = memory["x"][memory["y"] == c][(-memory["priority"][memory["y"] == c]).argsort()]
        assert torch.equal(mine, x[order])
    model.load_state_dict(snap.states[-1])


def test_softmax_ce_is_off_and_distillation_uses_the_previous_model(trained):
    stream, icarl, snap, _ = trained
    assert all(bool((w == 0).all()) for _, _, w in snap.terms)
    assert all(t["distill"].item() == 0.0 for i, t, _ in snap.terms if i == 0)
    assert all(t["distill"].item() > 0.0 for i, t, _ in snap.terms if i > 0)
    assert all(torch.equal(icarl.previous[k], v) for k, v in snap.states[-1].items())


def test_prediction_is_the_nearest_mean_of_exemplars(trained):
    stream, icarl, snap, engine = trained
    model, memory = engine.model, icarl.buffer.view()
    model.eval()
    with torch.no_grad():
        feats = F.normalize(model.features(memory["x"]), dim=1)
        means = F.normalize(torch.stack([feats[memory["y"] == c].mean(0) for c in range(10)]), dim=1)
        x = torch.cat([e.test_x for e in stream])
        f = F.normalize(model.features(x), dim=1)
        want = ((f[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        ctx = engine.context(stream, 4)
        got = engine.predict(ctx, x, torch.zeros(len(x), dtype=torch.long)).argmax(1)
    assert torch.equal(got, want)
    assert engine.matrix[-1] != [0.0] * 5


class Steps(Plugin):
    """Counts training steps."""

    name = "steps"

    def __init__(self):
        self.steps = 0

    def after_step(self, ctx, batch):
        self.steps += 1


class NoFeatures(torch.nn.Module):
    """A classifier without a `features` method."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


def test_a_small_memory_a_model_without_features_and_repeated_classes_fail_before_training():
    stream = split(load_source("digits"), "class")
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(8,))
    steps = Steps()
    with pytest.raises(ConfigError, match="memory_size 9 is below the stream's 10 classes"):
        Engine(model, [ICaRL(memory_size=9), steps]).run(stream)
    with pytest.raises(IncompatibleError, match="features"):
        Engine(NoFeatures(), [ICaRL(memory_size=10), steps]).run(stream)
    permuted_stream = permuted(load_source("digits"), "task", n_experiences=2)
    with pytest.raises(IncompatibleError, match=r"experience 1 repeats class\(es\) \[0, 1, 2"):
        Engine(model, [ICaRL(memory_size=10), steps]).run(permuted_stream)
    assert steps.steps == 0
    Engine(model, [ICaRL(memory_size=10)], epochs=1).run(stream[:1])  # one exemplar per class is enough


@pytest.mark.parametrize("value", [2.5, "abc", 0, None])
def test_memory_size_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match="icarl: memory_size must be a positive integer"):
        build_strategy("icarl", {"memory_size": value})


def test_icarl_beats_naive_by_a_quarter(replay):
    assert replay.acc("icarl", memory_size=replay.BUFFER) >= replay.acc("naive") + 0.25
