"""Deep generative replay (Shin et al. 2017) with a small MLP variational auto-encoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from lifelong.continual.importance import call_model, evaluating
from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.continual.plugins.replay import append_term, replay_rows
from lifelong.core.checks import check_count, check_positive
from lifelong.core.errors import DataError, NonFiniteLossError
from lifelong.core.optimizers import build_optimizer
from lifelong.core.registries import STRATEGIES


class VAE(nn.Module):
    """MLP variational auto-encoder of inputs in [0, 1] (Kingma & Welling 2014), two hidden layers."""

    def __init__(self, input_shape: Sequence[int], hidden: int = 400, latent: int = 100) -> None:
        super().__init__()
        d = math.prod(input_shape)
        self.latent = latent
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU(), nn.Linear(hidden, d), nn.Unflatten(1, tuple(input_shape)))

    def loss(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Per-sample negative ELBO: Bernoulli reconstruction (summed over inputs) plus KL to N(0, I)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        recon = self.decoder(mu + eps * (0.5 * logvar).exp())
        rec = F.binary_cross_entropy_with_logits(recon, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec + kl


def sample_inputs(vae: nn.Module, decoder_state: dict[str, Tensor], n: int,
                  generator: torch.Generator, device: torch.device) -> Tensor:
    """n inputs decoded from z ~ N(0, I) by `vae`'s decoder with weights `decoder_state`."""
    z = torch.randn(n, vae.latent, generator=generator).to(device)
    return torch.sigmoid(functional_call(vae.decoder, decoder_state, (z,)))


@STRATEGIES.register("generative", aliases=("dgr", "generative_replay"), family="replay",
                     stores="generator", memory="O(params)", compute="High", forgetting="Moderate",
                     paper="Shin et al. 2017, Continual Learning with Deep Generative Replay")
class GenerativeReplay(Plugin):
    """Deep generative replay (Shin et al. 2017): a generator replays past inputs, labelled by the
    previous classifier.

    From the second experience each batch is joined with `replay_batch_size` (default: as many as
    the batch) inputs sampled from the previous generator and labelled with the previous
    classifier's most likely seen class; the loss is r·CE(current) + (1 − r)·CE(replayed) with
    r = 1 / (experiences so far), the paper's mixing ratio. The generator — a VAE (two hidden
    layers of `hidden` = 400 units, `latent` = 100, Adam `lr` = 1e-3, as in van de Ven & Tolias
    2018; Shin et al. used a GAN) with its own optimiser — takes `generator_steps` updates per
    training step on the same mixture, so it learns continually too. Previous models are frozen
    copies of weights and buffers run with `torch.func.functional_call`, the classifier in eval
    mode (its BatchNorm statistics never change, no dropout). Inputs must lie in [0, 1].
    """

    name = "generative"
    runs_model = True
    settings = ("domain", "class")

    def __init__(self, hidden: int = 400, latent: int = 100, lr: float = 1e-3,
                 replay_batch_size: int | None = None, generator_steps: int = 1) -> None:
        self.hidden = check_count(f"{self.name}: hidden", hidden)
        self.latent = check_count(f"{self.name}: latent", latent)
        self.lr = check_positive(f"{self.name}: lr", lr, allow_zero=False)
        self.replay_batch_size = check_count(f"{self.name}: replay_batch_size", replay_batch_size, allow_none=True)
        self.generator_steps = check_count(f"{self.name}: generator_steps", generator_steps)
        self.vae: VAE | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.input_shape: list[int] = []
        self.previous: dict[str, Tensor] | None = None
        self.previous_decoder: dict[str, Tensor] | None = None
        self.seen: Tensor | None = None
        self._loaded: dict[str, Any] | None = None

    def before_experience(self, ctx: Context) -> None:
        x = ctx.experience.train_x
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{self.name}: the VAE models inputs in [0, 1], but experience "
                            f"{ctx.index} spans [{float(x.min()):.3g}, {float(x.max()):.3g}]; "
                            "rescale the inputs")
        if self.vae is None:
            self.input_shape = self.input_shape or list(x.shape[1:])
            # built at the first experience, or rebuilt on resume to load its weights: either way
            # the global generator (dropout, initialisations) must not advance, or a resumed run
            # would draw differently from an uninterrupted one
            with torch.random.fork_rng(devices=[]):
                self.vae = VAE(self.input_shape, self.hidden, self.latent).to(ctx.device)
            self.optimizer = build_optimizer("adam", self.vae.parameters(), self.lr)
            if self._loaded is not None:  # resuming: the optimiser's state follows the device
                self.vae.load_state_dict(self._loaded["vae"])
                self.optimizer.load_state_dict(self._loaded["optimizer"])
                self._loaded = None

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        if self.previous is None:
            return batch
        n = replay_rows(batch, self.replay_batch_size)
        with torch.no_grad(), evaluating(ctx.model):
            x = sample_inputs(self.vae, self.previous_decoder, n, ctx.generator, ctx.device)
            t = torch.zeros(n, dtype=batch.t.dtype, device=ctx.device)
            logits = call_model(ctx.model, self.previous, x, t)
            seen = self.seen.to(ctx.device)[: logits.shape[1]]
            y = logits.masked_fill(~seen, torch.finfo(logits.dtype).min).argmax(1)
        r = 1.0 / (ctx.index + 1)
        return append_term(batch, x, y, t, weight=1.0 - r, current=r)

    def after_step(self, ctx: Context, batch: Batch) -> None:
        x = batch.x.detach()
        for _ in range(self.generator_steps):
            loss = batch.mean(self.vae.loss(x, ctx.generator))
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"{self.name}: the VAE's loss became {float(loss.detach())} at step {ctx.step} of experience "
                    f"{ctx.index}; lower the generator's lr (now {self.lr}) or check the inputs for NaN")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    def after_experience(self, ctx: Context) -> None:
        width = ctx.stream.n_classes
        if self.seen is None:
            self.seen = torch.zeros(width, dtype=torch.bool)
        self.seen[list(ctx.experience.classes)] = True
        self.previous = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        self.previous_decoder = {k: v.detach().clone() for k, v in self.vae.decoder.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"input_shape": self.input_shape, "seen": self.seen, "previous": self.previous,
                "previous_decoder": self.previous_decoder,
                "vae": self.vae.state_dict() if self.vae is not None else None,
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen, self.previous = state["seen"], state["previous"]
        self.previous_decoder, self.input_shape = state["previous_decoder"], state["input_shape"]
        self.vae = self.optimizer = None
        self._loaded = state if state["vae"] is not None else None
