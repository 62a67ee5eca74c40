"""iCaRL and generative replay run their frozen previous model in eval mode: with BatchNorm and
dropout its buffers stay bit-identical over training steps and its outputs are deterministic."""

import pytest
import torch
from torch import nn

from lifelong.continual.engine import Engine
from lifelong.continual.importance import call_model, evaluating
from lifelong.continual.plugin import Plugin
from lifelong.continual.plugins.generative import GenerativeReplay
from lifelong.continual.plugins.icarl import ICaRL
from lifelong.continual.strategies import build_strategy
from lifelong.core.seeding import seed_everything
from lifelong.data.scenarios import split
from lifelong.data.sources import load_source


class NormNet(nn.Module):
    """Linear → BatchNorm → ReLU → Dropout features and a linear head: a teacher run in training
    mode would move its running statistics and drop units."""

    def __init__(self, d_in: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d_in, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(16, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TeacherWatch(Plugin):
    """Placed after the strategy: checks its previous model after every step of later experiences."""

    name = "watch"

    def __init__(self, plugin):
        self.plugin, self.frozen, self.unchanged, self.training, self.deterministic = plugin, None, [], [], []

    def before_experience(self, ctx):
        previous = self.plugin.previous
        self.frozen = None if previous is None else {k: v.clone() for k, v in previous.items()}

    def extend_batch(self, ctx, batch):
        if self.frozen is None or not isinstance(self.plugin, GenerativeReplay):
            return batch
        with torch.no_grad(), evaluating(ctx.model):  # the replayed rows' labels are the eval-mode teacher's
            logits = call_model(ctx.model, self.frozen, batch.x[batch.n_current:], batch.t[batch.n_current:])
        seen = self.plugin.seen[: logits.shape[1]]
        labels = logits.masked_fill(~seen, torch.finfo(logits.dtype).min).argmax(1)
        self.deterministic.append(torch.equal(labels, batch.y[batch.n_current:]))
        return batch

    def loss_terms(self, ctx, batch, outputs):
        if self.frozen is not None and isinstance(self.plugin, ICaRL):
            first, second = (self.plugin.loss_terms(ctx, batch, outputs)["distill"] for _ in range(2))
            self.deterministic.append(torch.equal(first, second))
        return {}

    def after_step(self, ctx, batch):
        self.training.append(ctx.model.training)
        if self.frozen is not None:
            self.unchanged.append(all(torch.equal(self.plugin.previous[k], v) for k, v in self.frozen.items()))


@pytest.mark.parametrize("strategy,args", [("icarl", {"memory_size": 60}), ("generative", {"hidden": 32, "latent": 8})])
def test_the_previous_model_keeps_its_batchnorm_statistics_and_drops_nothing(strategy, args):
    stream = split(load_source("digits"), "class")[:2]
    (plugin,) = build_strategy(strategy, args)
    watch = TeacherWatch(plugin)
    model = NormNet(64, stream.n_classes)
    generator = seed_everything(0)
    Engine(model, [plugin, watch], epochs=1, batch_size=30, generator=generator).run(stream)
    assert len(watch.unchanged) > 5 and all(watch.unchanged)
    assert len(watch.deterministic) > 5 and all(watch.deterministic)
    assert all(watch.training)  # the trained model is back in training mode after each teacher call
    # negative control: the trained model's own statistics moved during the second experience
    mean = "body.2.running_mean"
    assert not torch.equal(model.state_dict()[mean], watch.frozen[mean])
