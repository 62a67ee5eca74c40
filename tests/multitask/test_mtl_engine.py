"""The multi-task engine: gradient wiring by hand, per-task data and accumulation, aggregators
that need losses, samples or after-step losses, and learning on digits and scenes."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import (
    IncompatibleError,
)
from lifelong.core.registries import WEIGHTINGS
from lifelong.data.multitask import load_benchmark
from lifelong.grad import MGDA, PCGrad, jacobian
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.presets import build_default
from lifelong.multitask.weighting import GradientWeighting, build_weighting


def test_gradient_weighting_updates_shared_params_with_the_aggregate(mtl):
    data = mtl.toy_shared()
    tr = mtl.trainer(data, "pcgrad")
    idx = torch.arange(16)
    shared0, private0 = mtl.flat(tr.shared), mtl.flat(tr.private)
    out = tr.model(data.splits["a"].train_x[idx])
    losses = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks])
    jac_s = jacobian(losses, tr.shared, retain_graph=True)
    jac_p = jacobian(losses, tr.private)
    expected_shared = shared0 - 0.1 * PCGrad()(jac_s)
    expected_private = private0 - 0.1 * jac_p.sum(0)
    tr.train_step(idx)
    torch.testing.assert_close(mtl.flat(tr.shared), expected_shared)
    torch.testing.assert_close(mtl.flat(tr.private), expected_private)
    assert len(tr.weights_trajectory) == 1 and len(tr.weights_trajectory[0]) == 3


def test_loss_weighting_on_per_task_data_follows_the_chain_rule(mtl):
    """Per-task data, uniform weighting: the step is the sum of each task's mean-loss gradient
    on its own first batch (drawn from the trainer's generator), whatever the micro-batch."""
    data = mtl.toy_per_task()
    tr = mtl.trainer(data, batch_size={"p": 24, "q": 8})
    gen = torch.Generator().manual_seed(0)
    params = [*tr.shared, *tr.private]
    before = mtl.flat(params)
    total = 0
    for task, bs in (("p", 24), ("q", 8)):
        idx = torch.randperm(data.n_train(task), generator=gen)[:bs]
        s = data.splits[task]
        total = total + tr.kinds[task].loss(tr.model(s.train_x[idx])[task], s.train_y[idx])
    expected = before - 0.1 * torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, params)])
    tr.train_step()
    torch.testing.assert_close(mtl.flat(params), expected)
    micro = mtl.trainer(data, batch_size={"p": 24, "q": 8}, micro_batch=5)
    micro.train_step()
    torch.testing.assert_close(mtl.flat([*micro.shared, *micro.private]), expected, atol=1e-6, rtol=1e-5)


def test_gradient_weighting_on_per_task_data_aggregates_each_tasks_own_batch(mtl):
    data = mtl.toy_per_task()
    tr = mtl.trainer(data, "mgda", batch_size=8)
    gen = torch.Generator().manual_seed(0)
    shared0 = mtl.flat(tr.shared)
    rows = []
    for task in ("p", "q"):
        idx = torch.randperm(data.n_train(task), generator=gen)[:8]
        s = data.splits[task]
        loss = tr.kinds[task].loss(tr.model(s.train_x[idx])[task], s.train_y[idx])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, tr.shared)]))
    expected = shared0 - 0.1 * MGDA()(torch.stack(rows))
    tr.train_step()
    torch.testing.assert_close(mtl.flat(tr.shared), expected, atol=1e-6, rtol=1e-5)


def test_a_sampled_step_touches_only_the_drawn_tasks_head(mtl):
    data = mtl.toy_per_task()
    tr = mtl.trainer(data, sampler="proportional", tasks_per_step=1)
    heads0 = {t: mtl.flat(tr.model.heads[t].parameters()) for t in tr.tasks}
    drawn = tr.sampler.sample(0, 1, torch.Generator().manual_seed(0))
    tr.train_step()
    moved = {t: not torch.equal(heads0[t], mtl.flat(tr.model.heads[t].parameters())) for t in tr.tasks}
    assert moved == {t: t == tr.tasks[int(drawn)] for t in tr.tasks}


def test_sampled_per_task_training_learns_both_tasks(mtl):
    data = mtl.toy_per_task(sizes=(400, 150))
    tr = mtl.trainer(data, sampler="temperature", sampler_args={"temperature": 2.0},
                 tasks_per_step=2, epochs=6, optimizer="adam", lr=1e-2)
    tr.fit()
    final = tr.history[-1]["test"]
    assert final["p"]["accuracy"] > 0.85 and final["q"]["accuracy"] > 0.85


def test_learning_on_digits_with_dwa_feeding_epochs():
    data = load_benchmark("multi-digits")
    torch.manual_seed(0)
    model = build_default("hps", data, width=64)
    tr = MultiTaskTrainer(model, build_weighting("dwa", 3), data,
                          TrainConfig(epochs=4, batch_size=64, lr=3e-3),
                          torch.Generator().manual_seed(0))
    before = tr.evaluate()
    tr.fit()
    after = tr.history[-1]["test"]
    assert before["digit"]["accuracy"] < 0.25
    assert after["digit"]["accuracy"] > 0.8  # chance 0.1
    assert after["parity"]["accuracy"] > 0.8 and after["large"]["accuracy"] > 0.8  # chance ~0.5
    assert tr.weights_trajectory[0] == [1.0, 1.0, 1.0]
    assert tr.weights_trajectory[-1] != [1.0, 1.0, 1.0]  # DWA moved after two epochs


def test_dense_tasks_learn_on_scenes():
    data = load_benchmark("scenes", n_train=600, n_test=200, size=12)
    torch.manual_seed(0)
    model = build_default("hps", data, width=16)
    tr = MultiTaskTrainer(model, build_weighting("uniform", 3), data,
                          TrainConfig(epochs=4, batch_size=32, lr=1e-2),
                          torch.Generator().manual_seed(0))
    before = tr.evaluate()
    tr.fit()
    after = tr.history[-1]["test"]
    assert after["segment"]["miou"] > before["segment"]["miou"] + 0.3
    assert after["segment"]["miou"] > 0.45 and after["segment"]["pixel_accuracy"] > 0.85
    assert after["depth"]["mse"] < 0.1 * before["depth"]["mse"]
    assert after["count"]["accuracy"] > 0.5  # 4 classes, about uniform

class LossRecorder(MGDA):
    """MGDA that also asks for the task losses and records what it was given."""

    needs_losses = True

    def aggregate(self, J, losses=None):
        self.seen = losses
        return super().aggregate(J)


class SampleRecorder(MGDA):
    """MGDA on the first of three sampled Jacobians, recording the stack it was given."""

    samples = 3

    def aggregate(self, J, losses=None):
        self.stack = J
        return super().aggregate(J[0])


def test_aggregators_that_need_losses_get_the_steps_losses(mtl):
    data = mtl.toy_shared()
    tr = mtl.trainer(data, "mgda")
    tr.weighting.aggregator = LossRecorder()
    idx = torch.arange(16)
    out = tr.model(data.splits["a"].train_x[idx])
    expected = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks]).detach()
    losses = tr.train_step(idx)
    torch.testing.assert_close(tr.weighting.aggregator.seen, expected)
    torch.testing.assert_close(losses, expected)


def test_sampled_aggregators_get_one_jacobian_per_disjoint_part_of_the_batch(mtl):
    """MoDo/SDMGrad-style aggregators: 3 parts of a 16-row batch (6, 5, 5 rows); the heads move by the
    whole batch's gradient (the size-weighted mean of the parts'), the trunk by the aggregate."""
    data = mtl.toy_shared()
    tr = mtl.trainer(data, "mgda")
    tr.weighting.aggregator = SampleRecorder()
    idx = torch.arange(16)
    s = data.splits
    shared0, private0 = mtl.flat(tr.shared), mtl.flat(tr.private)

    def losses_of(rows):
        out = tr.model(s["a"].train_x[rows])
        return torch.stack([tr.kinds[t].loss(out[t], s[t].train_y[rows]) for t in tr.tasks])

    parts = [idx[:6], idx[6:11], idx[11:]]
    stacks = torch.stack([jacobian(losses_of(p), tr.shared) for p in parts])
    whole = losses_of(idx)
    expected_shared = shared0 - 0.1 * MGDA()(stacks[0])
    expected_private = private0 - 0.1 * jacobian(whole, tr.private).sum(0)
    losses = tr.train_step(idx)
    torch.testing.assert_close(tr.weighting.aggregator.stack, stacks)
    torch.testing.assert_close(losses, whole.detach())
    torch.testing.assert_close(mtl.flat(tr.shared), expected_shared)
    torch.testing.assert_close(mtl.flat(tr.private), expected_private)
    with pytest.raises(IncompatibleError, match="this batch has only 2 rows"):
        tr.train_step(torch.arange(2))


def test_sampled_aggregators_are_refused_before_training_where_they_cannot_run(mtl):
    def build(data, **cfg):
        model = build_architecture("hps", data, lambda: mtl.mlp(data.input_shape[0]))
        weighting = GradientWeighting(len(data.tasks), SampleRecorder())
        return MultiTaskTrainer(model, weighting, data, TrainConfig(**{"batch_size": 16, **cfg}),
                                torch.Generator().manual_seed(0))

    with pytest.raises(IncompatibleError, match="share inputs, not with per-task data"):
        build(mtl.toy_per_task())
    with pytest.raises(IncompatibleError, match="use batch_size >= 3, got 2"):
        build(mtl.toy_shared(), batch_size=2)


def test_an_epochs_tail_batch_too_short_to_split_is_dropped(mtl):
    """64 rows in batches of 31: two steps of 31, and the tail of 2 rows (fewer than MoDo's three
    parts) is left out of the epoch instead of failing mid-run."""
    data = mtl.toy_shared()
    tr = mtl.trainer(data, "modo", batch_size=31, epochs=2)
    tr.fit()
    assert tr.step == 4 and [h["step"] for h in tr.history] == [2, 4]
    assert mtl.trainer(data, "uniform", batch_size=31).steps_per_epoch() == 3  # others keep it


class AfterStepRecorder(torch.nn.Module):
    """A uniform loss weighting that asks for the losses after each step (as FAMO does)."""

    kind = "loss"
    needs_losses_after_step = True

    def combine(self, losses, *, shared=None, step=0):
        self.before = losses.detach()
        return losses.sum()

    def after_step(self, losses):
        self.after = losses


@pytest.mark.parametrize("shared", [True, False])
def test_weightings_that_ask_get_the_losses_of_the_same_batches_after_the_step(mtl, shared):
    data = mtl.toy_shared() if shared else mtl.toy_per_task()
    tr = mtl.trainer(data)
    tr.weighting = AfterStepRecorder()
    idx = torch.arange(16) if shared else None
    tr.train_step(idx)
    with torch.no_grad():
        if shared:
            out = tr.model(data.splits["a"].train_x[idx])
            expected = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks])
        else:  # each task's first batch of its own seeded permutation, as the step drew it
            gen = torch.Generator().manual_seed(0)
            rows = {t: torch.randperm(data.n_train(t), generator=gen)[:16] for t in tr.tasks}
            expected = torch.stack([tr.kinds[t].loss(tr.model(data.splits[t].train_x[rows[t]])[t],
                                                     data.splits[t].train_y[rows[t]]) for t in tr.tasks]).double()
    torch.testing.assert_close(tr.weighting.after, expected)
    assert not torch.allclose(tr.weighting.after.to(tr.weighting.before), tr.weighting.before)


def test_after_step_weightings_refuse_a_task_sampler(mtl):
    data = mtl.toy_per_task()
    model = build_architecture("hps", data, lambda: mtl.mlp(data.input_shape[0]))
    with pytest.raises(IncompatibleError, match="before and after at each step"):
        MultiTaskTrainer(model, AfterStepRecorder(), data, TrainConfig(sampler="equal"),
                         torch.Generator().manual_seed(0))


# Krum with m = 1 follows a single task's gradient per step (by design: the others are outliers to
# it), so one of three tasks lags; averaging the two most central ones (Multi-Krum) learns all three.
ENGINE_ARGS = {"constant": {"weights": [1.0, 1.0, 1.0]}, "stch": {"warmup_epochs": 1}, "krum": {"n_selected": 2}}


@pytest.mark.parametrize(("name", "kwargs"), [(n, ENGINE_ARGS.get(n, {})) for n in WEIGHTINGS.names()]
                         + [("mgda", {"upper_bound": True})])
def test_every_weighting_trains_through_the_engine_on_digits(name, kwargs):
    """Each registered weighting, through the trainer's own step (losses, sample splits, after-step
    losses, head scales, MGDA-UB on the representation): three tasks of the embedded digits, 4 epochs."""
    data = load_benchmark("multi-digits")
    torch.manual_seed(0)
    model = build_default("hps", data, width=64)
    tr = MultiTaskTrainer(model, build_weighting(name, 3, **kwargs), data,
                          TrainConfig(epochs=4, batch_size=64, lr=3e-3), torch.Generator().manual_seed(0))
    tr.fit()
    after = tr.history[-1]["test"]
    assert after["digit"]["accuracy"] > 0.8  # chance 0.1
    assert after["parity"]["accuracy"] > 0.8 and after["large"]["accuracy"] > 0.8  # chance ~0.5


def test_heads_learn_from_the_transformed_losses_when_the_aggregator_transforms_them(mtl):
    """DB-MTL trains on log-losses: each head moves by ∇ log(L_t + ε) = J_t / (L_t + ε), not J_t."""
    data = mtl.toy_shared()
    tr = mtl.trainer(data, "db_mtl")
    idx = torch.arange(16)
    private0 = mtl.flat(tr.private)
    out = tr.model(data.splits["a"].train_x[idx])
    losses = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks])
    jac_p = jacobian(losses, tr.private)
    tr.train_step(idx)
    expected = private0 - 0.1 * (1 / (losses.detach() + 1e-8)) @ jac_p
    torch.testing.assert_close(mtl.flat(tr.private), expected)
    assert not torch.allclose(mtl.flat(tr.private), private0 - 0.1 * jac_p.sum(0))


@pytest.mark.parametrize("name", ["imtl", "excess_mtl"])
def test_heads_follow_the_aggregators_task_weights_from_the_second_step(mtl, name):
    """IMTL's learned scales e^s (moved by the first step) and ExcessMTL's weights (moved by the
    second call) multiply each head's gradient, as back-propagating Σ_t w_t L_t would."""
    data = mtl.toy_shared()
    tr = mtl.trainer(data, name)
    tr.train_step(torch.arange(16))
    agg = tr.weighting.aggregator
    s_before = agg.log_scale.detach().clone() if name == "imtl" else None
    idx = torch.arange(16, 32)
    private0 = mtl.flat(tr.private)
    out = tr.model(data.splits["a"].train_x[idx])
    losses = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks])
    jac_p = jacobian(losses, tr.private)
    tr.train_step(idx)
    scales = s_before.exp() if name == "imtl" else agg.task_weights
    assert not torch.allclose(scales, torch.ones_like(scales))
    torch.testing.assert_close(mtl.flat(tr.private), private0 - 0.1 * scales.to(jac_p) @ jac_p)


@pytest.mark.parametrize(("name", "kwargs"), [("sum", {}), ("mean", {}), ("constant", {"weights": [2.0, 0.5, -1.0]}),
                                              ("rgw", {})])
def test_aggregators_whose_weights_ignore_the_jacobian_step_without_forming_it(mtl, monkeypatch, name, kwargs):
    """Sum, mean, constant and RGW update the shared parameters by wᵀJ whatever J: the trainer takes it as
    ∇ Σ_t w_t L_t, one backward, and forms J only on the conflict monitor's steps. Three steps give the
    same parameters and weights as forming J at every step (the monitor due each step), RGW drawing
    the same weights from the same seed."""
    import lifelong.multitask.steps as steps

    data = mtl.toy_shared()

    def build(conflict_every):
        torch.manual_seed(0)
        model = build_architecture("cross_stitch", data, lambda: mtl.mlp(6))
        args = {"generator": torch.Generator().manual_seed(3)} if name == "rgw" else kwargs
        return MultiTaskTrainer(model, build_weighting(name, 3, **args), data,
                                TrainConfig(batch_size=16, lr=0.1, optimizer="sgd", conflict_every=conflict_every),
                                torch.Generator())

    fast, slow = build(0), build(1)
    assert fast.weighting.jacobian_free
    formed = []
    monkeypatch.setattr(steps, "jacobian", lambda *a, **k: formed.append(1) or jacobian(*a, **k))
    for tr in (fast, slow):  # the stitched Jacobian of cross-stitch's columns forms J too
        tr.layerwise.jacobian = lambda *a, stitched=tr.layerwise.jacobian: formed.append(1) or stitched(*a)
    weights = []
    for start in (0, 16, 32):
        torch.testing.assert_close(fast.train_step(torch.arange(start, start + 16)),
                                   slow.train_step(torch.arange(start, start + 16)))
        weights.append(fast.weighting.weights.clone())
        torch.testing.assert_close(weights[-1], slow.weighting.weights)
    assert len(formed) == 3  # the slow trainer's, one per step
    torch.testing.assert_close(mtl.flat(fast.model.parameters()), mtl.flat(slow.model.parameters()))
    torch.testing.assert_close(torch.tensor(fast.weights_trajectory), torch.tensor(slow.weights_trajectory))
    if name == "rgw":
        assert not torch.allclose(weights[0], weights[1])
    if name == "constant":
        torch.testing.assert_close(weights[0], torch.tensor([2.0, 0.5, -1.0]))
    assert not build_weighting("pcgrad", 3).jacobian_free
