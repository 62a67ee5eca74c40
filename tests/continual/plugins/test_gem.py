"""GEM: per-experience memories, projected gradients that conflict with no past memory, learning."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.continual.importance import flat_grads
from lifelong.continual.plugin import Plugin
from lifelong.continual.plugins.gem import GEM, trainable
from lifelong.data.scenarios import split
from lifelong.data.sources import load_source


def task_gradient(ctx, x, y, t):
    """The gradient of the mean memory loss of one past experience, computed on its own."""
    loss = F.cross_entropy(ctx.mask(ctx.forward(x, t), t), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, trainable(ctx))])


class GradSpy(Plugin):
    """Records the flat gradient when its after_backward runs (placed before and after GEM)."""

    name = "spy"

    def __init__(self, gem=None):
        self.gem, self.grads, self.memory_grads = gem, [], []

    def after_backward(self, ctx, batch):
        self.grads.append(flat_grads(trainable(ctx)).clone())
        if self.gem is not None and self.gem.memory is not None and len(self.gem.memory):
            rows = self.gem.memory.view()
            self.memory_grads.append(torch.stack([
                task_gradient(ctx, rows["x"][m], rows["y"][m], rows["t"][m])
                for m in (rows["group"] == g for g in rows["group"].unique())]))
        elif self.gem is not None:
            self.memory_grads.append(None)


@pytest.mark.parametrize("setting,head", [("class", "single"), ("task", "multi")])
def test_projected_gradient_conflicts_with_no_past_memory(engine_on, setting, head):
    stream = split(load_source("digits"), setting)
    gem = GEM(patterns_per_experience=30)
    before, after = GradSpy(), GradSpy(gem)
    engine_on(stream, [before, gem, after], head=head).run(stream)
    projected = 0
    for g0, g1, G in zip(before.grads, after.grads, after.memory_grads, strict=True):
        if G is None:
            assert torch.equal(g0, g1)
            continue
        assert G.shape[0] <= 4
        scale = g1.norm() * G.norm(dim=1)
        assert bool((G @ g1 >= -1e-5 * scale).all())  # every ⟨g̃, g_k⟩ ≥ 0
        if bool((G @ g0 < 0).any()):
            projected += 1
        else:
            assert torch.equal(g0, g1)  # no conflict: the gradient is left alone
    assert projected >= 10  # the projection was exercised, not vacuous


def test_memory_keeps_patterns_per_experience_for_every_experience(engine_on, digits):
    gem = GEM(patterns_per_experience=25)
    engine_on(digits, [gem]).run(digits)
    assert gem.memory.counts() == {i: 25 for i in range(5)} and gem.memory.capacity == 125
    rows = gem.memory.view()
    for i, exp in enumerate(digits):
        assert set(rows["y"][rows["group"] == i].tolist()) <= set(exp.classes)


def test_gem_beats_naive_by_a_quarter(replay):
    # 100 patterns per experience: a 500-sample memory over the 5 experiences
    assert replay.acc("gem", patterns_per_experience=replay.BUFFER // 5) >= replay.acc("naive") + 0.25
