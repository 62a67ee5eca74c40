"""The multi-task trainer's refusals and typed errors, and micro-batches on shared inputs."""

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
from lifelong.data.multitask import load_benchmark, shared_inputs
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.presets import build_default
from lifelong.multitask.weighting import build_weighting


def test_typed_errors(mtl):
    data = mtl.toy_shared()
    other = load_benchmark("multi-digits")
    with pytest.raises(IncompatibleError, match="heads"):
        MultiTaskTrainer(build_default("hps", other), build_weighting("uniform", 3), data,
                         TrainConfig(), torch.Generator())
    with pytest.raises(IncompatibleError, match="per-task data"):
        mtl.trainer(data, sampler="equal")
    with pytest.raises(IncompatibleError, match="every task's gradient"):
        mtl.trainer(mtl.toy_per_task(), "pcgrad", sampler="equal")
    with pytest.raises(IncompatibleError, match="representation"):
        mtl.trainer(data, "graddrop", arch="mmoe").train_step(torch.arange(8))
    with pytest.raises(IncompatibleError, match="GradNorm"):
        mtl.trainer(mtl.toy_per_task(), "gradnorm").train_step()
    bad_y = {t: data.splits[t].train_y.clone() for t in data.task_names}
    bad_y["c"][:] = float("inf")
    broken = shared_inputs("broken", data.tasks, data.splits["a"].train_x, bad_y,
                           data.splits["a"].test_x, {t: data.splits[t].test_y for t in data.task_names})
    with pytest.raises(DataError, match="task 'c' .* train targets hold NaN or infinite"):
        mtl.trainer(broken)  # refused before training (it used to fail at the first step)
    diverged = mtl.trainer(mtl.toy_shared())
    diverged.train["c"][1][:8] = float("inf")  # targets that go bad after the checks: the loss tells
    with pytest.raises(NonFiniteLossError, match="'c'"):
        diverged.train_step(torch.arange(8))

@pytest.mark.parametrize("name", ["pcgrad", "imtl", "nash_mtl", "gradnorm"])
def test_weightings_acting_on_shared_parameters_are_refused_for_soft_sharing(mtl, name):
    """Soft sharing shares no parameter: PCGrad or IMTL trained exactly as uniform (same parameters after
    an epoch, in the audit) and GradNorm failed asking for `shared=`; now refused before training."""
    with pytest.raises(IncompatibleError, match="SoftSharing shares none .* use a loss weighting"):
        mtl.trainer(mtl.toy_shared(), name, arch="soft")
    mtl.trainer(mtl.toy_shared(), "uncertainty", arch="soft").fit()  # loss weightings still train it


def test_a_weighted_sum_with_non_finite_gradients_of_finite_losses_is_refused_at_that_step(mtl):
    """sum/mean/constant/rgw skip forming J (whose check refused this) unless the monitor is due; a
    non-finite gradient of finite losses (sqrt at 0) must not reach the parameters either way."""
    data = mtl.toy_shared()

    class Sqrt(torch.nn.Module):
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return (h * 0).pow(2).sqrt()  # 0 with an infinite derivative

    for conflict_every in (0, 1):
        torch.manual_seed(0)
        model = build_architecture("hps", data, lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), Sqrt()))
        tr = MultiTaskTrainer(model, build_weighting("sum", 3), data,
                              TrainConfig(batch_size=16, lr=0.1, optimizer="sgd", conflict_every=conflict_every),
                              torch.Generator())
        before = mtl.flat(model.parameters())
        with pytest.raises(DataError, match="non-finite"):
            tr.train_step(torch.arange(16))
        assert torch.equal(mtl.flat(model.parameters()), before)


@pytest.mark.parametrize("name", ["uniform", "uncertainty", "gls", "pcgrad"])
def test_micro_batches_on_shared_inputs_give_the_whole_batchs_step(mtl, name):
    """micro_batch=5 on a 16-row shared batch: forwards of 5, 5, 5 and 1 rows (it used to be ignored),
    and the same losses, model and weighting parameters as one forward of the 16 rows."""
    data = mtl.toy_shared()
    whole, micro = mtl.trainer(data, name), mtl.trainer(data, name, micro_batch=5)
    rows = []
    micro.model.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    idx = torch.arange(3, 19)
    expected = whole.train_step(idx)
    torch.testing.assert_close(micro.train_step(idx), expected.double())
    assert rows == [5, 5, 5, 1]
    torch.testing.assert_close(mtl.flat(micro.model.parameters()), mtl.flat(whole.model.parameters()))
    if name == "uncertainty":
        torch.testing.assert_close(micro.weighting.log_var, whole.weighting.log_var)
    torch.testing.assert_close(torch.tensor(micro.weights_trajectory), torch.tensor(whole.weights_trajectory))


@pytest.mark.parametrize(("name", "why"), [("graddrop", "GradDrop needs the whole batch's graph"),
                                           ("gradnorm", "GradNorm needs the whole batch's graph"),
                                           ("modo", "MoDo already splits each batch into 3 parts")])
def test_micro_batches_are_refused_where_one_batchs_graph_is_needed(mtl, name, why):
    with pytest.raises(IncompatibleError, match=why):
        mtl.trainer(mtl.toy_shared(), name, micro_batch=4)
    mtl.trainer(mtl.toy_shared(), name, micro_batch=16)  # no split: nothing to refuse


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
    tr = mtl.trainer(data, steps_per_epoch=9)
    seen = []
    tr.fit(before_step=lambda t, idx: seen.append(idx))
    gen = torch.Generator().manual_seed(0)
    perms = [torch.randperm(64, generator=gen) for _ in range(3)]
    expected = [p[i:i + 16] for p in perms[:2] for i in range(0, 64, 16)] + [perms[2][:16]]
    assert len(seen) == 9 and all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))
    assert tr.step == 9 and all(math.isfinite(v) for v in tr.history[-1]["train_loss"].values())
    short = mtl.trainer(data, batch_size=24, steps_per_epoch=5)  # 24, 24, 16 rows a pass
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
        mtl.trainer(with_targets("b", s["b"].train_y.float()))
    with pytest.raises(LabelOutOfRangeError, match=r"task 'a' \(ce\): the test targets hold labels 0..3, outside "
                                                   r"0..2 for its 3 classes; relabel them or declare n_outputs >= 4"):
        mtl.trainer(with_targets("a", s["a"].train_y, torch.tensor([0] + [3] * 31)))
    with pytest.raises(LabelOutOfRangeError, match=r"labels -1..1, outside 0..1 .* relabel them from 0"):
        mtl.trainer(with_targets("b", s["b"].train_y - (s["b"].train_y == 0).long()))


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
        mtl.trainer(mtl.toy_per_task(), batch_size={"p": 8})
    with pytest.raises(ConfigError, match=r"unknown \['z'\]"):
        mtl.trainer(mtl.toy_per_task(), batch_size={"p": 8, "q": 8, "z": 4})
    with pytest.raises(ConfigError, match="share their inputs, so every step takes one batch for all"):
        mtl.trainer(mtl.toy_shared(), batch_size={"a": 8, "b": 16, "c": 8})
    mtl.trainer(mtl.toy_shared(), batch_size={"a": 8, "b": 8, "c": 8})  # one size, given per task
    with pytest.raises(ConfigError, match="tasks_per_step=2 is the number of tasks a sampler draws"):
        TrainConfig(tasks_per_step=2)


@pytest.mark.parametrize(("name", "cfg", "per_task"), [("pcgrad", {}, False), ("uniform", {"conflict_every": 1}, False),
                                                       ("mgda", {"micro_batch": 4}, False), ("uniform", {}, True)])
def test_a_partly_frozen_trunk_trains_around_its_frozen_layer(mtl, name, cfg, per_task):
    """A frozen first layer (a pretrained extractor): gradient weightings, the conflict monitor,
    micro-batches and per-task data failed inside autograd ("One of the differentiated Tensors does not
    require grad"); the trainer now trains only what requires grad, and the frozen weight never moves."""
    data = mtl.toy_per_task() if per_task else mtl.toy_shared()
    torch.manual_seed(0)
    model = build_architecture("hps", data, lambda: mtl.mlp(6))
    model.backbone[0].weight.requires_grad_(False)
    frozen, trained = model.backbone[0].weight.detach().clone(), model.backbone[0].bias.detach().clone()
    tr = MultiTaskTrainer(model, build_weighting(name, len(data.tasks)), data,
                          TrainConfig(epochs=1, batch_size=16, lr=0.1, optimizer="sgd", **cfg), torch.Generator())
    tr.fit()
    assert torch.equal(model.backbone[0].weight, frozen)
    assert not torch.equal(model.backbone[0].bias, trained)


@pytest.mark.parametrize("name", ["pcgrad", "uniform"])
def test_freezing_or_unfreezing_between_steps_takes_effect_at_the_next_step(mtl, name):
    """The layerwise path wrote a gradient into a weight frozen after the trainer was built, and SGD moved
    it (by 0.185 in the audit); a trunk unfrozen after warming up the heads must train again."""
    tr = mtl.trainer(mtl.toy_shared(), name)
    weight = tr.model.backbone[0].weight.requires_grad_(False)
    before = weight.detach().clone()
    tr.train_step(torch.arange(16))
    assert torch.equal(weight, before)
    weight.requires_grad_(True)
    tr.train_step(torch.arange(16, 32))
    assert not torch.equal(weight, before)
    tr.model.backbone.requires_grad_(False)
    if name == "pcgrad":  # nothing shared left to aggregate
        with pytest.raises(IncompatibleError, match="trains none of those it shares .* unfreeze some of them"):
            tr.train_step(torch.arange(16))


def test_evaluation_refuses_a_split_it_does_not_hold(mtl):
    tr = mtl.trainer(mtl.toy_shared())
    assert tr.evaluate("train") != tr.evaluate("test")
    with pytest.raises(ConfigError, match="split 'val' is not 'test' or 'train'"):
        tr.evaluate("val")  # it used to score the training split


def test_an_epoch_order_fills_steps_per_epoch_with_passes(mtl):
    """steps_per_epoch = 7 with an epoch_order of 32 rows in batches of 16: 7 steps over four passes
    (it used to take one pass, 2 steps), each pass a new call."""
    tr = mtl.trainer(mtl.toy_shared(), steps_per_epoch=7)
    calls, rows = [], []
    tr.fit(before_step=lambda t, idx: rows.append(idx), epoch_order=lambda t: calls.append(1) or torch.arange(32))
    assert tr.step == 7 and len(calls) == 4
    assert [r.tolist() for r in rows] == [list(range(16)), list(range(16, 32))] * 3 + [list(range(16))]


def test_stch_is_refused_for_a_run_its_warm_up_would_fill(mtl):
    """STCH trains on Σ log L_t for warmup_epochs + 1 epochs (4 + 1 by default) while it measures the
    nadir: the CLI's default 5 epochs never trained on its objective, silently; now refused."""
    with pytest.raises(ConfigError, match=r"first 5 epochs, so 5 epoch\(s\) would never .* at least 6 epochs"):
        mtl.trainer(mtl.toy_shared(), "stch", epochs=5)
    tr = mtl.trainer(mtl.toy_shared(), "stch", epochs=6, steps_per_epoch=1)
    tr.fit()
    assert not tr.weighting.warming_up  # the last epoch trained on STCH's objective
