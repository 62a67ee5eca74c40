"""The multi-task engine: gradient wiring by hand, per-task data and accumulation, learning on
digits and scenes, and typed errors."""

from __future__ import annotations

import math
import re

import pytest
import torch

from lifelong.core.errors import (
    ConfigError,
    DataError,
    IncompatibleError,
    LabelOutOfRangeError,
    NonFiniteLossError,
    ShapeMismatchError,
)
from lifelong.core.registries import WEIGHTINGS
from lifelong.data.multitask import load_benchmark, shared_inputs
from lifelong.grad import MGDA, PCGrad, jacobian
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.presets import build_default
from lifelong.multitask.weighting import GradientWeighting, build_weighting


def trainer(mtl, data, weighting="uniform", arch="hps", seed=0, **cfg):
    torch.manual_seed(seed)
    model = build_architecture(arch, data, lambda: mtl.mlp(data.input_shape[0]))
    config = TrainConfig(**{"epochs": 1, "batch_size": 16, "lr": 0.1, "optimizer": "sgd", **cfg})
    return MultiTaskTrainer(model, build_weighting(weighting, len(data.tasks)), data, config,
                            torch.Generator().manual_seed(seed))


def flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params])


def test_gradient_weighting_updates_shared_params_with_the_aggregate(mtl):
    data = mtl.toy_shared()
    tr = trainer(mtl, data, "pcgrad")
    idx = torch.arange(16)
    shared0, private0 = flat(tr.shared), flat(tr.private)
    out = tr.model(data.splits["a"].train_x[idx])
    losses = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks])
    jac_s = jacobian(losses, tr.shared, retain_graph=True)
    jac_p = jacobian(losses, tr.private)
    expected_shared = shared0 - 0.1 * PCGrad()(jac_s)
    expected_private = private0 - 0.1 * jac_p.sum(0)
    tr.train_step(idx)
    torch.testing.assert_close(flat(tr.shared), expected_shared)
    torch.testing.assert_close(flat(tr.private), expected_private)
    assert len(tr.weights_trajectory) == 1 and len(tr.weights_trajectory[0]) == 3


def test_loss_weighting_on_per_task_data_follows_the_chain_rule(mtl):
    """Per-task data, uniform weighting: the step is the sum of each task's mean-loss gradient
    on its own first batch (drawn from the trainer's generator), whatever the micro-batch."""
    data = mtl.toy_per_task()
    tr = trainer(mtl, data, batch_size={"p": 24, "q": 8})
    gen = torch.Generator().manual_seed(0)
    params = [*tr.shared, *tr.private]
    before = flat(params)
    total = 0
    for task, bs in (("p", 24), ("q", 8)):
        idx = torch.randperm(data.n_train(task), generator=gen)[:bs]
        s = data.splits[task]
        total = total + tr.kinds[task].loss(tr.model(s.train_x[idx])[task], s.train_y[idx])
    expected = before - 0.1 * torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, params)])
    tr.train_step()
    torch.testing.assert_close(flat(params), expected)
    micro = trainer(mtl, data, batch_size={"p": 24, "q": 8}, micro_batch=5)
    micro.train_step()
    torch.testing.assert_close(flat([*micro.shared, *micro.private]), expected, atol=1e-6, rtol=1e-5)


def test_gradient_weighting_on_per_task_data_aggregates_each_tasks_own_batch(mtl):
    data = mtl.toy_per_task()
    tr = trainer(mtl, data, "mgda", batch_size=8)
    gen = torch.Generator().manual_seed(0)
    shared0 = flat(tr.shared)
    rows = []
    for task in ("p", "q"):
        idx = torch.randperm(data.n_train(task), generator=gen)[:8]
        s = data.splits[task]
        loss = tr.kinds[task].loss(tr.model(s.train_x[idx])[task], s.train_y[idx])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, tr.shared)]))
    expected = shared0 - 0.1 * MGDA()(torch.stack(rows))
    tr.train_step()
    torch.testing.assert_close(flat(tr.shared), expected, atol=1e-6, rtol=1e-5)


def test_a_sampled_step_touches_only_the_drawn_tasks_head(mtl):
    data = mtl.toy_per_task()
    tr = trainer(mtl, data, sampler="proportional", tasks_per_step=1)
    heads0 = {t: flat(tr.model.heads[t].parameters()) for t in tr.tasks}
    drawn = tr.sampler.sample(0, 1, torch.Generator().manual_seed(0))
    tr.train_step()
    moved = {t: not torch.equal(heads0[t], flat(tr.model.heads[t].parameters())) for t in tr.tasks}
    assert moved == {t: t == tr.tasks[int(drawn)] for t in tr.tasks}


def test_sampled_per_task_training_learns_both_tasks(mtl):
    data = mtl.toy_per_task(sizes=(400, 150))
    tr = trainer(mtl, data, sampler="temperature", sampler_args={"temperature": 2.0},
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


def test_typed_errors(mtl):
    data = mtl.toy_shared()
    other = load_benchmark("multi-digits")
    with pytest.raises(IncompatibleError, match="heads"):
        MultiTaskTrainer(build_default("hps", other), build_weighting("uniform", 3), data,
                         TrainConfig(), torch.Generator())
    with pytest.raises(IncompatibleError, match="per-task data"):
        trainer(mtl, data, sampler="equal")
    with pytest.raises(IncompatibleError, match="every task's gradient"):
        trainer(mtl, mtl.toy_per_task(), "pcgrad", sampler="equal")
    with pytest.raises(IncompatibleError, match="representation"):
        trainer(mtl, data, "graddrop", arch="mmoe").train_step(torch.arange(8))
    with pytest.raises(IncompatibleError, match="GradNorm"):
        trainer(mtl, mtl.toy_per_task(), "gradnorm").train_step()
    bad_y = {t: data.splits[t].train_y.clone() for t in data.task_names}
    bad_y["c"][:] = float("inf")
    broken = shared_inputs("broken", data.tasks, data.splits["a"].train_x, bad_y,
                           data.splits["a"].test_x, {t: data.splits[t].test_y for t in data.task_names})
    with pytest.raises(DataError, match="task 'c' .* train targets hold NaN or infinite"):
        trainer(mtl, broken)  # refused before training (it used to fail at the first step)
    diverged = trainer(mtl, mtl.toy_shared())
    diverged.train["c"][1][:8] = float("inf")  # targets that go bad after the checks: the loss tells
    with pytest.raises(NonFiniteLossError, match="'c'"):
        diverged.train_step(torch.arange(8))


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
    tr = trainer(mtl, data, "mgda")
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
    tr = trainer(mtl, data, "mgda")
    tr.weighting.aggregator = SampleRecorder()
    idx = torch.arange(16)
    s = data.splits
    shared0, private0 = flat(tr.shared), flat(tr.private)

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
    torch.testing.assert_close(flat(tr.shared), expected_shared)
    torch.testing.assert_close(flat(tr.private), expected_private)
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
    tr = trainer(mtl, data, "modo", batch_size=31, epochs=2)
    tr.fit()
    assert tr.step == 4 and [h["step"] for h in tr.history] == [2, 4]
    assert trainer(mtl, data, "uniform", batch_size=31).steps_per_epoch() == 3  # others keep it


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
    tr = trainer(mtl, data)
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
    tr = trainer(mtl, data, "db_mtl")
    idx = torch.arange(16)
    private0 = flat(tr.private)
    out = tr.model(data.splits["a"].train_x[idx])
    losses = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks])
    jac_p = jacobian(losses, tr.private)
    tr.train_step(idx)
    expected = private0 - 0.1 * (1 / (losses.detach() + 1e-8)) @ jac_p
    torch.testing.assert_close(flat(tr.private), expected)
    assert not torch.allclose(flat(tr.private), private0 - 0.1 * jac_p.sum(0))


@pytest.mark.parametrize("name", ["imtl", "excess_mtl"])
def test_heads_follow_the_aggregators_task_weights_from_the_second_step(mtl, name):
    """IMTL's learned scales e^s (moved by the first step) and ExcessMTL's weights (moved by the
    second call) multiply each head's gradient, as back-propagating Σ_t w_t L_t would."""
    data = mtl.toy_shared()
    tr = trainer(mtl, data, name)
    tr.train_step(torch.arange(16))
    agg = tr.weighting.aggregator
    s_before = agg.log_scale.detach().clone() if name == "imtl" else None
    idx = torch.arange(16, 32)
    private0 = flat(tr.private)
    out = tr.model(data.splits["a"].train_x[idx])
    losses = torch.stack([tr.kinds[t].loss(out[t], data.splits[t].train_y[idx]) for t in tr.tasks])
    jac_p = jacobian(losses, tr.private)
    tr.train_step(idx)
    scales = s_before.exp() if name == "imtl" else agg.task_weights
    assert not torch.allclose(scales, torch.ones_like(scales))
    torch.testing.assert_close(flat(tr.private), private0 - 0.1 * scales.to(jac_p) @ jac_p)


def test_a_sampled_step_weighs_only_the_drawn_task(mtl):
    """Uncertainty with one task drawn per step: the total is ½ e^{-s_p} L_p + ½ s_p alone, so s_p
    moves by −lr·½(1 − L_p), the undrawn task's s_q keeps exactly 0 (it used to take the ½·s_q term,
    drifting by −lr·½ a step), the model moves by −lr·½·∇L_p, and the step reports L_q as NaN."""
    data = mtl.toy_per_task()
    torch.manual_seed(0)
    model = build_architecture("hps", data, lambda: mtl.mlp(data.input_shape[0]))
    tr = MultiTaskTrainer(model, build_weighting("uncertainty", 2), data,
                          TrainConfig(batch_size=16, lr=0.1, optimizer="sgd", sampler="equal"),
                          torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    t = int(tr.sampler.sample(0, 1, gen))
    idx = torch.randperm(data.n_train(tr.tasks[t]), generator=gen)[:16]
    s = data.splits[tr.tasks[t]]
    params = [*tr.shared, *tr.private]
    before = flat(params)
    loss = tr.kinds[tr.tasks[t]].loss(tr.model(s.train_x[idx])[tr.tasks[t]], s.train_y[idx])
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    losses = tr.train_step()
    assert float(losses[t]) == pytest.approx(float(loss.detach()))
    assert torch.isnan(losses[1 - t])
    expected_s = torch.zeros(2)
    expected_s[t] = -0.1 * 0.5 * (1 - float(loss.detach()))
    torch.testing.assert_close(tr.weighting.log_var.detach(), expected_s)
    torch.testing.assert_close(flat(params), before - 0.1 * 0.5 * torch.cat([g.reshape(-1) for g in grads]))
    assert tr.weights_trajectory[0][1 - t] == 0.0 and tr.weights_trajectory[0][t] == 0.5


def test_sampled_epochs_average_each_tasks_loss_over_the_steps_that_drew_it(mtl):
    """One task drawn per step: an epoch's train loss of a task is the mean of its losses at the
    steps that drew it (it used to divide the sum by every step, counting the others as 0)."""
    data = mtl.toy_per_task()
    tr = trainer(mtl, data, sampler="proportional", tasks_per_step=1, epochs=2, lr=0.05)
    seen: list[torch.Tensor] = []
    step = tr.train_step
    tr.train_step = lambda idx=None: seen.append(step(idx)) or seen[-1]
    tr.fit()
    n = tr.steps_per_epoch()
    for epoch, record in enumerate(tr.history):
        rows = torch.stack(seen[epoch * n:(epoch + 1) * n]).double()
        assert bool((rows.isnan().sum(1) == 1).all())  # one of the two tasks each step
        for i, task in enumerate(tr.tasks):
            drawn = rows[:, i][~rows[:, i].isnan()]
            assert len(drawn) > 0
            assert record["train_loss"][task] == pytest.approx(float(drawn.mean()))


def test_weightings_that_cannot_weigh_a_subset_refuse_a_task_sampler(mtl):
    with pytest.raises(IncompatibleError, match="GradNorm cannot weigh only the tasks a sampler draws"):
        trainer(mtl, mtl.toy_per_task(), "gradnorm", sampler="equal")


def test_the_trainer_anneals_the_sampler_over_the_runs_epochs(mtl):
    """An annealed sampler in a 3-epoch run draws with α = 1.0, 0.6, 0.2 in epochs 1, 2, 3 (it used
    to assume 1000 steps whatever the run, and moved α by 0.0008 a step)."""
    data = mtl.toy_per_task(sizes=(200, 40))
    tr = trainer(mtl, data, sampler="annealed", epochs=3)
    n = tr.steps_per_epoch()
    seen = {}
    sample = tr.sampler.sample

    def spy(step, k, gen):
        seen[step] = tr.sampler.exponent(step)
        return sample(step, k, gen)

    tr.sampler.sample = spy
    tr.fit()
    assert sorted(seen) == list(range(3 * n))
    assert [seen[step] for step in (0, n - 1, n, 2 * n - 1, 2 * n, 3 * n - 1)] == \
        pytest.approx([1.0, 1.0, 0.6, 0.6, 0.2, 0.2])


@pytest.mark.parametrize("name", ["uniform", "uncertainty", "gls", "pcgrad"])
def test_micro_batches_on_shared_inputs_give_the_whole_batchs_step(mtl, name):
    """micro_batch=5 on a 16-row shared batch: forwards of 5, 5, 5 and 1 rows (it used to be ignored),
    and the same losses, model and weighting parameters as one forward of the 16 rows."""
    data = mtl.toy_shared()
    whole, micro = trainer(mtl, data, name), trainer(mtl, data, name, micro_batch=5)
    rows = []
    micro.model.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    idx = torch.arange(3, 19)
    expected = whole.train_step(idx)
    torch.testing.assert_close(micro.train_step(idx), expected.double())
    assert rows == [5, 5, 5, 1]
    torch.testing.assert_close(flat(micro.model.parameters()), flat(whole.model.parameters()))
    if name == "uncertainty":
        torch.testing.assert_close(micro.weighting.log_var, whole.weighting.log_var)
    torch.testing.assert_close(torch.tensor(micro.weights_trajectory), torch.tensor(whole.weights_trajectory))


@pytest.mark.parametrize(("name", "why"), [("graddrop", "GradDrop needs the whole batch's graph"),
                                           ("gradnorm", "GradNorm needs the whole batch's graph"),
                                           ("modo", "MoDo already splits each batch into 3 parts")])
def test_micro_batches_are_refused_where_one_batchs_graph_is_needed(mtl, name, why):
    with pytest.raises(IncompatibleError, match=why):
        trainer(mtl, mtl.toy_shared(), name, micro_batch=4)
    trainer(mtl, mtl.toy_shared(), name, micro_batch=16)  # no split: nothing to refuse


@pytest.mark.parametrize("shared", [True, False])
def test_micro_batches_are_refused_for_a_batchnorm_trunk(mtl, shared):
    """BatchNorm normalises each micro-batch with its own statistics, so the parts' gradients do not
    add up to the batch's (0.19 off on a gradient of 0.30 in the audit); refused before training."""
    data = mtl.toy_shared() if shared else mtl.toy_per_task()
    d = data.input_shape[0]

    def build(micro_batch):
        model = build_architecture("hps", data, lambda: torch.nn.Sequential(
            torch.nn.Linear(d, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU()))
        model.eval()  # the trainer trains in training mode whatever the model's mode now
        tr = MultiTaskTrainer(model, build_weighting("uniform", len(data.tasks)), data,
                              TrainConfig(batch_size=16, micro_batch=micro_batch), torch.Generator())
        assert not model.training  # the check leaves the modes as they were
        return tr

    with pytest.raises(IncompatibleError, match="HardSharing has BatchNorm"):
        build(4)
    build(16)


def test_steps_per_epoch_beyond_one_pass_takes_fresh_permutations(mtl):
    """64 shared rows in batches of 16 are 4 steps a pass; 9 steps per epoch take two whole
    permutations and the first batch of a third (it used to slice past the first: empty batches and
    a NonFiniteLossError)."""
    data = mtl.toy_shared()
    tr = trainer(mtl, data, steps_per_epoch=9)
    seen = []
    tr.fit(before_step=lambda t, idx: seen.append(idx))
    gen = torch.Generator().manual_seed(0)
    perms = [torch.randperm(64, generator=gen) for _ in range(3)]
    expected = [p[i:i + 16] for p in perms[:2] for i in range(0, 64, 16)] + [perms[2][:16]]
    assert len(seen) == 9 and all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))
    assert tr.step == 9 and all(math.isfinite(v) for v in tr.history[-1]["train_loss"].values())
    short = trainer(mtl, data, batch_size=24, steps_per_epoch=5)  # 24, 24, 16 rows a pass
    sizes = []
    short.fit(before_step=lambda t, idx: sizes.append(len(idx)))
    assert sizes == [24, 24, 16, 24, 24]


def test_targets_that_cannot_be_scored_are_refused_before_training(mtl):
    data = mtl.toy_shared()
    s = data.splits

    def with_targets(task, train_y, test_y=None):
        ys = {t: train_y if t == task else s[t].train_y for t in data.task_names}
        test = {t: test_y if t == task and test_y is not None else s[t].test_y for t in data.task_names}
        return shared_inputs("bad", data.tasks, s["a"].train_x, ys, s["a"].test_x, test)

    with pytest.raises(DataError, match=r"task 'b' \(ce\): the train targets are class labels but have dtype "
                                        r"torch.float32; convert them with y.long\(\)"):
        trainer(mtl, with_targets("b", s["b"].train_y.float()))
    with pytest.raises(LabelOutOfRangeError, match=r"task 'a' \(ce\): the test targets hold labels 0..3, outside "
                                                   r"0..2 for its 3 classes; relabel them or declare n_outputs >= 4"):
        trainer(mtl, with_targets("a", s["a"].train_y, torch.tensor([0] + [3] * 31)))
    with pytest.raises(LabelOutOfRangeError, match=r"labels -1..1, outside 0..1 .* relabel them from 0"):
        trainer(mtl, with_targets("b", s["b"].train_y - (s["b"].train_y == 0).long()))


@pytest.mark.parametrize(("kind", "out", "y", "expected"), [
    ("token-ce", (4, 5, 3), (4, 7), (4, 7, 3)), ("pixel-ce", (4, 3, 8, 8), (4, 6, 6), (4, 3, 6, 6)),
    ("ce", (4, 3), (4, 1), (4, 3, 1)), ("mse", (4, 1), (4,), (4,))])
def test_outputs_whose_non_class_dims_differ_from_the_targets_are_refused(kind, out, y, expected):
    """Token and pixel targets of another length or size used to pass the check (a bare RuntimeError
    in cross_entropy followed)."""
    from lifelong.data.multitask import TaskSpec
    from lifelong.multitask.losses import check_output

    spec = TaskSpec("t", kind, 3 if kind != "mse" else 1)
    with pytest.raises(ShapeMismatchError, match=rf"head output {re.escape(str(out))} .*it should be "
                                                 rf"{re.escape(str(expected))}"):
        check_output(spec, torch.zeros(out), torch.zeros(y, dtype=torch.float if kind == "mse" else torch.long))


def test_evaluation_checks_the_heads_against_the_test_targets(mtl):
    """A model built for 4 classes of task 'a' is refused at evaluation too, not only at training."""
    data = mtl.toy_shared()
    wider = shared_inputs("wider", (type(data.tasks[0])("a", "ce", 4), *data.tasks[1:]), data.splits["a"].train_x,
                          {t: data.splits[t].train_y for t in data.task_names}, data.splits["a"].test_x,
                          {t: data.splits[t].test_y for t in data.task_names})
    model = build_architecture("hps", wider, lambda: mtl.mlp(6))
    tr = MultiTaskTrainer(model, build_weighting("uniform", 3), data, TrainConfig(), torch.Generator())
    with pytest.raises(ShapeMismatchError, match=r"task 'a' \(ce\): head output \(32, 4\)"):
        tr.evaluate()


def test_a_batch_size_mapping_must_name_every_task(mtl):
    with pytest.raises(ConfigError, match=r"maps tasks \['p'\] .* \(missing \['q'\], unknown \[\]\)"):
        trainer(mtl, mtl.toy_per_task(), batch_size={"p": 8})
    with pytest.raises(ConfigError, match=r"unknown \['z'\]"):
        trainer(mtl, mtl.toy_per_task(), batch_size={"p": 8, "q": 8, "z": 4})
    with pytest.raises(ConfigError, match="share their inputs, so every step takes one batch for all"):
        trainer(mtl, mtl.toy_shared(), batch_size={"a": 8, "b": 16, "c": 8})
    trainer(mtl, mtl.toy_shared(), batch_size={"a": 8, "b": 8, "c": 8})  # one size, given per task
    with pytest.raises(ConfigError, match="tasks_per_step=2 is the number of tasks a sampler draws"):
        TrainConfig(tasks_per_step=2)


@pytest.mark.parametrize(("name", "arch"), [("pcgrad", "hps"), ("mgda", "hps"), ("nash_mtl", "hps"), ("modo", "hps"),
                                            ("pcgrad", "mmoe"), ("upgrad", "mmoe"), ("cagrad", "cgc")])
def test_mlp_trunks_step_by_the_layerwise_jacobian_as_by_the_batched_one(mtl, name, arch):
    """HPS on a Linear/ReLU trunk, and MMoE and CGC on Linear/ReLU experts, take the layerwise
    Jacobian (every step, including sampled aggregators' parts); three steps give the same
    parameters, conflict statistics and gate distributions as the batched `jacobian`, which a hook on
    the model brings back (hooks must run)."""
    data = mtl.toy_shared()
    fast, slow = (trainer(mtl, data, name, arch=arch, conflict_every=1) for _ in range(2))
    expected = {"hps": lambda m: [m.backbone], "mmoe": lambda m: list(m.experts),
                "cgc": lambda m: list(m.shared_experts[0])}[arch](fast.model)
    assert fast.layerwise is not None and fast.layerwise.trunks == expected
    slow.model.register_forward_pre_hook(lambda module, args: None)
    calls = []
    layerwise = fast.layerwise.jacobian
    fast.layerwise.jacobian = lambda *args: calls.append(1) or layerwise(*args)
    for start in (0, 16, 32):
        torch.testing.assert_close(fast.train_step(torch.arange(start, start + 16)),
                                   slow.train_step(torch.arange(start, start + 16)))
    assert len(calls) == 3 * getattr(fast.weighting, "samples", 1)
    torch.testing.assert_close(flat(fast.model.parameters()), flat(slow.model.parameters()))
    torch.testing.assert_close(fast.monitor.cos_sum, slow.monitor.cos_sum)
    if arch in ("mmoe", "cgc"):
        torch.testing.assert_close(fast.model.gate_weights, slow.model.gate_weights)


def test_the_layerwise_path_is_taken_only_where_it_applies_and_still_checks_the_losses(mtl):
    data = mtl.toy_shared()
    assert trainer(mtl, data, "pcgrad", arch="cross_stitch").layerwise is None  # columns mixed at every stage
    two_levels = build_architecture("ple", data, lambda: mtl.mlp(6, 6))  # level 2 reads mixtures, not x
    config = TrainConfig(epochs=1, batch_size=16, lr=0.1, optimizer="sgd")
    assert MultiTaskTrainer(two_levels, build_weighting("pcgrad", 3), data, config, torch.Generator()).layerwise is None
    for padding_mode, layerwise in (("zeros", True), ("reflect", False)):
        torch.manual_seed(0)
        conv = build_architecture("hps", data, lambda mode=padding_mode: torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, 6)), torch.nn.Conv1d(1, 2, 3, padding=1, padding_mode=mode), torch.nn.Flatten()))
        tr = MultiTaskTrainer(conv, build_weighting("pcgrad", 3), data, config, torch.Generator())
        assert (tr.layerwise is not None) == layerwise
    diverged = trainer(mtl, data, "pcgrad")
    diverged.train["c"][1][:8] = float("nan")
    with pytest.raises(NonFiniteLossError, match="'c'"):
        diverged.train_step(torch.arange(8))


def test_dense_tasks_on_the_default_convolution_trunk_step_layerwise_as_batched():
    """Scenes' segmentation, depth and count on the default convolution trunk: the layerwise
    Jacobian's two steps equal the vmapped one's (a hook on the model selects it)."""
    data = load_benchmark("scenes", n_train=16, n_test=8, size=8)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2)
    runs = []
    for hooked in (False, True):
        torch.manual_seed(0)
        tr = MultiTaskTrainer(build_default("hps", data, width=8), build_weighting("mgda", 3), data, config,
                              torch.Generator().manual_seed(0))
        assert tr.layerwise is not None
        if hooked:
            tr.model.register_forward_hook(lambda *args: None)
        runs.append((torch.stack([tr.train_step(torch.arange(i, i + 8)) for i in (0, 8)]), flat(tr.model.parameters())))
    torch.testing.assert_close(runs[0], runs[1])

