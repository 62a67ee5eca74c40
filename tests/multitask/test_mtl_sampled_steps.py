"""Task-sampled training: the drawn tasks alone are weighed, their losses averaged over the steps
that drew them, and the annealed sampler follows the run's epochs."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import (
    IncompatibleError,
)
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.weighting import build_weighting


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
    before = mtl.flat(params)
    loss = tr.kinds[tr.tasks[t]].loss(tr.model(s.train_x[idx])[tr.tasks[t]], s.train_y[idx])
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    losses = tr.train_step()
    assert float(losses[t]) == pytest.approx(float(loss.detach()))
    assert torch.isnan(losses[1 - t])
    expected_s = torch.zeros(2)
    expected_s[t] = -0.1 * 0.5 * (1 - float(loss.detach()))
    torch.testing.assert_close(tr.weighting.log_var.detach(), expected_s)
    torch.testing.assert_close(mtl.flat(params), before - 0.1 * 0.5 * torch.cat([g.reshape(-1) for g in grads]))
    assert tr.weights_trajectory[0][1 - t] == 0.0 and tr.weights_trajectory[0][t] == 0.5


def test_sampled_epochs_average_each_tasks_loss_over_the_steps_that_drew_it(mtl):
    """One task drawn per step: an epoch's train loss of a task is the mean of its losses at the
    steps that drew it (it used to divide the sum by every step, counting the others as 0)."""
    data = mtl.toy_per_task()
    tr = mtl.trainer(data, sampler="proportional", tasks_per_step=1, epochs=2, lr=0.05)
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
        mtl.trainer(mtl.toy_per_task(), "gradnorm", sampler="equal")


def test_the_trainer_anneals_the_sampler_over_the_runs_epochs(mtl):
    """An annealed sampler in a 3-epoch run draws with α = 1.0, 0.6, 0.2 in epochs 1, 2, 3 (it used
    to assume 1000 steps whatever the run, and moved α by 0.0008 a step)."""
    data = mtl.toy_per_task(sizes=(200, 40))
    tr = mtl.trainer(data, sampler="annealed", epochs=3)
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
