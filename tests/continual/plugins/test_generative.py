"""Generative replay: the VAE's ELBO, replayed samples labelled by the frozen previous model, learning."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from lifelong.continual.engine import Engine
from lifelong.continual.importance import call_model, evaluating
from lifelong.continual.plugin import Plugin
from lifelong.continual.plugins.generative import VAE, GenerativeReplay
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError, DataError, NonFiniteLossError
from lifelong.core.seeding import seed_everything
from lifelong.data.scenarios import custom, split
from lifelong.data.sources import load_source
from lifelong.models import build_model


def test_aliases():
    assert [p.name for p in build_strategy("dgr")] == ["generative"]


def test_vae_loss_is_the_negative_elbo():
    vae = VAE((1, 4, 4), hidden=8, latent=3)
    x = torch.rand(5, 1, 4, 4)
    gen = torch.Generator().manual_seed(1)
    eps = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    mu, logvar = vae.encoder(x).chunk(2, dim=1)
    sigma = (0.5 * logvar).exp()
    recon = vae.decoder(mu + eps * sigma)
    rec = F.binary_cross_entropy_with_logits(recon, x, reduction="none").sum((1, 2, 3))
    kl = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(vae.loss(x, gen), rec + kl, atol=1e-5)


class Watch(Plugin):
    """Records each batch after the generative plugin extended it, and the model's state."""

    name = "watch"

    def __init__(self, plugin):
        self.plugin, self.batches, self.states, self.vae_losses = plugin, [], [], []

    def extend_batch(self, ctx, batch):
        labels = None
        if self.plugin.previous is not None:  # what the frozen previous classifier says of the replayed rows
            with torch.no_grad(), evaluating(ctx.model):
                logits = call_model(ctx.model, self.plugin.previous, batch.x[batch.n_current:], batch.t[:1])
            labels = logits[:, : 2 * ctx.index].argmax(1)
        self.batches.append((ctx.index, batch, labels))
        return batch

    def after_step(self, ctx, batch):
        with torch.no_grad():
            self.vae_losses.append((ctx.index, float(self.plugin.vae.loss(ctx.experience.train_x[:64],
                                                                            torch.Generator().manual_seed(0)).mean())))

    def after_experience(self, ctx):
        self.states.append({k: v.clone() for k, v in ctx.model.state_dict().items()})


@pytest.fixture(scope="module")
def watched():
    stream = split(load_source("digits"), "class")
    plugin = GenerativeReplay(hidden=100, latent=16, generator_steps=3)
    watch = Watch(plugin)
    generator = seed_everything(0)
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(32,))
    Engine(model, [plugin, watch], epochs=3, batch_size=16, generator=generator).run(stream)
    return stream, plugin, watch


def test_replayed_samples_are_labelled_with_past_classes_and_mixed_by_one_over_t(watched):
    stream, plugin, watch = watched
    assert all(b.weight is None and b.n_current < 0 for i, b, _ in watch.batches if i == 0)
    for i, batch, labels in watch.batches:
        if i == 0:
            continue
        n, cur = len(batch), batch.n_current
        replayed = batch.y[cur:]
        assert len(replayed) == cur and bool((replayed < 2 * i).all())  # only classes seen before
        assert torch.equal(replayed, labels)
        assert bool((batch.x[cur:] >= 0).all() and (batch.x[cur:] <= 1).all())
        r = 1 / (i + 1)  # the mixture r·mean CE(current) + (1 − r)·mean CE(replayed)
        ce = torch.rand(n, generator=torch.Generator().manual_seed(i))
        torch.testing.assert_close(batch.mean(ce), r * ce[:cur].mean() + (1 - r) * ce[cur:].mean())
    replayed_inputs = [b.x[b.n_current:] for i, b, _ in watch.batches if i > 0]
    assert not torch.equal(replayed_inputs[0], replayed_inputs[1])  # fresh samples every step


def test_previous_models_are_frozen_copies_and_the_generator_learns(watched):
    stream, plugin, watch = watched
    assert all(torch.equal(plugin.previous[k], v) for k, v in watch.states[-1].items())
    first = [loss for i, loss in watch.vae_losses if i == 0]
    assert first[-1] < 0.8 * first[0]


def test_inputs_outside_the_unit_interval_are_refused():
    stream = custom([((torch.full((4, 3), 2.0), torch.tensor([0, 1, 0, 1])),
                      (torch.zeros(2, 3), torch.tensor([0, 1])))])
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(4,))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        Engine(model, [GenerativeReplay()]).run(stream)


def test_a_diverging_vae_is_reported_with_advice():
    stream = split(load_source("digits"), "class")[:1]
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(4,))
    plugin = GenerativeReplay(hidden=8, latent=2, lr=1e12)  # Adam steps of ~lr: the VAE's logvar overflows
    with pytest.raises(NonFiniteLossError, match=r"generative: the VAE's loss became .* lower the generator's lr"):
        Engine(model, [plugin], generator=seed_everything(0)).run(stream)


@pytest.mark.parametrize("key,value", [("hidden", 2.5), ("latent", "abc"), ("generator_steps", 0),
                                       ("replay_batch_size", 1.5), ("lr", 0)])
def test_bad_settings_are_refused_when_built(key, value):
    with pytest.raises(ConfigError, match=f"generative: {key} must be"):
        build_strategy("generative", {key: value})


def test_generative_replay_beats_naive(replay):
    # stated margin 0.05 (seen: ≈ +0.10; the VAE gets one update per classifier step)
    assert replay.acc("generative") >= replay.acc("naive") + 0.05
