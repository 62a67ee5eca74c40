"""Learning without Forgetting: the distillation loss by hand, and what the plugin distils."""

import math

import pytest
import torch

from lifelong.continual.plugins.lwf import LwF, distillation_loss
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.data.scenarios import split
from lifelong.data.sources import load_source


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_distillation_loss_by_hand():
    new, old = [1.0, 2.0, 0.0], [0.5, 0.5, 3.0]
    p, q = _softmax([v / 2 for v in old]), _softmax([v / 2 for v in new])
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    got = distillation_loss(torch.tensor([new], dtype=torch.float64), torch.tensor([old], dtype=torch.float64))
    assert got.item() == pytest.approx(kl, rel=1e-12)
    same = torch.tensor([new, old], dtype=torch.float64)
    assert distillation_loss(same, same.clone()).item() == 0.0


def test_distillation_mask_and_heads():
    gen = torch.Generator().manual_seed(0)
    new = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    old = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    mask = torch.tensor([True, True, False, True, False])
    loss = distillation_loss(new, old, mask, temperature=2.0)
    by_hand = distillation_loss(new[:, mask], old[:, mask], temperature=2.0)
    torch.testing.assert_close(loss, by_hand)
    # gradient of the KL w.r.t. the new logits: (q − p) / (T · B) on kept classes, 0 elsewhere
    loss.backward()
    p, q = (old[:, mask] / 2).softmax(1), (new.detach()[:, mask] / 2).softmax(1)
    torch.testing.assert_close(new.grad[:, mask], (q - p) / (2 * 4))
    assert not new.grad[:, ~mask].any()
    # two heads = the sum of each head's loss
    heads = torch.stack([mask, ~mask])
    two = distillation_loss(new.detach(), old, heads)
    torch.testing.assert_close(two, distillation_loss(new.detach(), old, mask) +
                               distillation_loss(new.detach(), old, ~mask))
    with pytest.raises(ShapeMismatchError, match="class dimension"):
        distillation_loss(new, old[:, :3])


@pytest.mark.parametrize("new_shape,old_shape,mask_shape", [
    ((4, 5), (3, 5), None),           # other batch sizes
    ((4, 5), (2, 4, 5), None),        # one head against two
    ((5,), (5,), None),               # no batch dimension
    ((2, 2, 4, 5), (2, 2, 4, 5), None),
    ((4, 5), (4, 5), (4,)),           # mask over other classes
    ((2, 4, 5), (2, 4, 5), (3, 5)),   # a mask row per head, but three rows for two heads
    ((4, 5), (4, 5), (1, 1, 5)),
])
def test_distillation_refuses_logits_and_masks_that_do_not_fit(new_shape, old_shape, mask_shape):
    mask = None if mask_shape is None else torch.ones(mask_shape, dtype=torch.bool)
    with pytest.raises(ShapeMismatchError, match="do not fit"):
        distillation_loss(torch.zeros(new_shape), torch.zeros(old_shape), mask)


def test_distillation_accepts_every_documented_layout():
    heads = torch.tensor([[True, True, False], [False, True, True]])
    for new_shape, mask in [((4, 3), None), ((4, 3), heads[0]), ((4, 3), heads), ((2, 4, 3), heads),
                            ((2, 4, 3), heads[0]), ((2, 4, 3), None)]:
        assert distillation_loss(torch.zeros(new_shape), torch.zeros(new_shape), mask).item() == 0.0


def _batch(stream, i):
    from lifelong.continual.plugin import Batch

    e = stream[i]
    return Batch(e.train_x, e.train_y, e.train_t())


def test_single_head_distils_old_classes_from_a_frozen_copy(reg):
    model, stream = reg.tiny_model(), reg.tiny_stream("class")
    plugin = LwF()
    plugin.before_experience(reg.context(model, stream, 0))
    batch = _batch(stream, 1)
    assert plugin.loss_terms(reg.context(model, stream, 0), batch, model(batch.x)) == {}
    ctx = reg.context(model, stream, 1)
    plugin.before_experience(ctx)
    assert plugin.loss_terms(ctx, batch, model(batch.x))["distill"].item() == 0.0
    old_out = model(batch.x).detach()
    with torch.no_grad():
        model.head.weight[2:].add_(1.0)  # new classes only: masked out of the distillation
    assert plugin.loss_terms(ctx, batch, model(batch.x))["distill"].item() == 0.0
    with torch.no_grad():
        model.head.weight[0].add_(1.0)  # an old class: the frozen copy must not follow
    got = plugin.loss_terms(ctx, batch, model(batch.x))["distill"]
    expected = distillation_loss(model(batch.x), old_out, torch.tensor([True, True, False, False]))
    torch.testing.assert_close(got, expected)
    assert got.item() > 0


def test_multi_head_distils_old_heads_on_new_data(reg):
    model, stream = reg.tiny_model("multi"), reg.tiny_stream("task")
    ctx = reg.context(model, stream, 1)
    plugin = LwF(alpha=0.5, temperature=3.0)
    plugin.before_experience(ctx)
    batch = _batch(stream, 1)
    zeros = torch.zeros_like(batch.t)
    old_head0 = model(batch.x, zeros).detach()
    with torch.no_grad():
        model.head.weight[1].add_(1.0)  # the current task's head: not distilled
    assert plugin.loss_terms(ctx, batch, model(batch.x, batch.t))["distill"].item() == 0.0
    with torch.no_grad():
        model.head.weight[0].mul_(2.0)
    got = plugin.loss_terms(ctx, batch, model(batch.x, batch.t))["distill"]
    mask = stream.class_mask()[0]
    torch.testing.assert_close(got, 0.5 * distillation_loss(model(batch.x, zeros), old_head0, mask, 3.0))
    assert got.item() > 0


def test_state_round_trip_and_config_errors(reg):
    model, stream = reg.tiny_model(), reg.tiny_stream("class")
    plugin = LwF()
    plugin.before_experience(reg.context(model, stream, 1))
    clone = LwF()
    clone.load_state_dict(plugin.state_dict())
    batch = _batch(stream, 1)
    with torch.no_grad():
        model.head.weight[0].add_(1.0)
    ctx = reg.context(model, stream, 1)
    assert torch.equal(clone.loss_terms(ctx, batch, model(batch.x))["distill"],
                       plugin.loss_terms(ctx, batch, model(batch.x))["distill"])
    assert [p.name for p in build_strategy("learning_without_forgetting")] == ["lwf"]
    with pytest.raises(ConfigError, match="temperature"):
        LwF(temperature=0)


@pytest.mark.parametrize("head,setting", [("single", "class"), ("multi", "task")])
def test_warm_up_trains_only_the_new_tasks_head(reg, head, setting):
    """Li & Hoiem 2017, §3: before joint training the new head trains alone; the backbone (its
    BatchNorm statistics too) and the old heads or old classes' rows stay bit-identical, and the
    frozen copy distilled from is the model from before the warm-up."""
    model, stream = reg.tiny_model(head), reg.tiny_stream(setting)
    model.backbone.net.insert(2, torch.nn.BatchNorm1d(5).double())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plugin = LwF(warmup_epochs=3, warmup_lr=0.05)
    plugin.before_experience(reg.context(model, stream, 0))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # no warm-up on the first task
    plugin.before_experience(reg.context(model, stream, 1))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    new = (1, slice(None)) if head == "multi" else (slice(2, 4),)  # task 1's head / rows of classes 2, 3
    old = (0, slice(None)) if head == "multi" else (slice(0, 2),)
    for name in ("head.weight", "head.bias"):
        assert torch.equal(before[name][old], after[name][old])
        assert not torch.equal(before[name][new], after[name][new])
    assert all(torch.equal(before[k], plugin.old[k]) for k in before)


def test_warm_up_refuses_a_routed_model_and_bad_arguments(digits, engine_on):
    from lifelong.core.errors import IncompatibleError

    stream = split(load_source("digits"), "task")[:2]
    engine = engine_on(stream, build_strategy("adapters+lwf", {"lwf": {"warmup_epochs": 1}}))
    with pytest.raises(IncompatibleError, match="warmup_epochs=0"):
        engine.run(stream)
    assert engine.step == 0  # refused before the first experience trains
    with pytest.raises(ConfigError, match="warmup_epochs"):
        LwF(warmup_epochs=-1)
    with pytest.raises(ConfigError, match="warmup_lr"):
        LwF(warmup_lr=0)


@pytest.mark.parametrize("head,setting", [("single", "class"), ("multi", "task")])
def test_old_outputs_are_recorded_once_for_the_experience_and_looked_up(reg, head, setting, monkeypatch):
    """Li & Hoiem 2017, Alg. 1: the frozen model's outputs on the experience's data are computed once
    (in chunks, at the first batch) and looked up by row; only rows another plugin appended run the
    frozen model, and every model routed by batch runs it whole; every answer equals running it afresh."""
    from lifelong.continual.plugin import Batch, TrainData
    from lifelong.continual.plugins import lwf

    monkeypatch.setattr(lwf, "RECORD_ROWS", 7)
    model, stream = reg.tiny_model(head), reg.tiny_stream(setting)
    plugin = LwF()
    e = stream[1]
    data = TrainData(e.train_x, e.train_y, e.train_t())
    ctx = reg.context(model, stream, 1).advance(data=data)
    plugin.before_experience(ctx)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # the model moves away from the frozen copy
    runs = []
    model.register_forward_hook(lambda m, i, o: runs.append(len(i[0])))
    student = 0 if head == "single" else 1  # a multi-head student runs again over the old task's head
    old = stream[0]

    def batch(rows, replay=False):
        b = Batch(data.x[rows], data.y[rows], data.t[rows], index=rows)
        return b.append(old.train_x[:3], old.train_y[:3], old.train_t()[:3]) if replay else b

    chunks = [min(7, len(data) - s) for s in range(0, len(data), 7)]
    for rows, replay, routed, frozen_runs in (([4, 0, 7, 2], False, False, chunks),  # first batch: record all
                                              ([0, 7], False, False, []),            # looked up
                                              ([2, 4], True, False, [3]),            # appended rows run
                                              ([7, 1], False, True, [2])):           # routed: batch runs
        b = batch(torch.tensor(rows), replay)
        outputs = model(b.x, b.t) if head == "multi" else model(b.x)
        runs.clear()
        got = plugin.loss_terms(ctx.advance(routed=routed), b, outputs)["distill"]
        assert runs[student:] == frozen_runs
        fresh = Batch(b.x, b.y, b.t, n_current=b.n_current)  # no index: the frozen copy runs
        torch.testing.assert_close(got, plugin.loss_terms(reg.context(model, stream, 1), fresh, outputs)["distill"])
        assert got.item() > 0
    assert plugin.recorded[1].shape == (1, len(data), stream.n_classes)  # one old head
    plugin.after_experience(ctx)
    assert plugin.recorded is None


def test_recording_runs_at_most_record_rows_inputs_per_frozen_forward(reg, monkeypatch):
    """A multi-head model sees each row once per old head, so recording takes RECORD_ROWS // heads
    rows per forward (memory stays bounded however many tasks came before); outputs are unchanged."""
    from lifelong.continual.plugin import TrainData
    from lifelong.continual.plugins import lwf

    monkeypatch.setattr(lwf, "RECORD_ROWS", 7)
    model, stream = reg.tiny_model("multi"), reg.tiny_stream("task")
    e = stream[1]
    data = TrainData(e.train_x, e.train_y, e.train_t())
    ctx = reg.context(model, stream, 1).advance(data=data)
    plugin = LwF()
    plugin.before_experience(ctx)
    plugin.tasks = torch.tensor([0, 1])  # two heads to distil, as after two earlier tasks
    plugin.masks = stream.class_mask()[plugin.tasks]
    runs = []
    model.register_forward_hook(lambda m, i, o: runs.append(len(i[0])))
    recorded = plugin.record(ctx, data)
    assert runs == [6] * (len(data) // 3) and recorded.shape == (2, len(data), stream.n_classes)
    torch.testing.assert_close(recorded, plugin.old_outputs(ctx, data.x, data.t))


def test_lwf_composes_with_strategies_that_route_batches(digits, engine_on):
    """Architecture strategies route each batch's task labels; LwF's frozen copy must see the
    batch as routed (recording whole experiences at once broke `hat+lwf`): the engine says so."""
    from lifelong.continual.strategies import build_strategy

    stream = split(load_source("digits"), "task")[:3]
    assert not engine_on(stream, build_strategy("lwf")).context(stream, 0).routed
    for name in ("hat+lwf", "adapters+lwf"):
        engine = engine_on(stream, build_strategy(name), epochs=2)
        assert engine.context(stream, 0).routed
        engine.lr = 0.01
        matrix = engine.run(stream)
        assert min(matrix[-1]) > 0.65  # task-IL chance is 0.5 on two classes
