"""Prototype-based continual learning as a strategy of the continual engine ("prototypes", "ncm")."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lifelong.continual.plugin import Context, Plugin, TrainData
from lifelong.core.checks import check_count, check_flag
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.meta.prototypes import ClassPrototypes


@STRATEGIES.register("prototypes", aliases=("ncm", "nmc", "nearest_mean", "protonet"),
                     family="prototype", stores="class means", memory="O(classes·features)",
                     compute="Low", forgetting="Low",
                     paper="Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot "
                           "Learning; Mensink et al. 2013, nearest class mean")
class PrototypePlugin(Plugin):
    """Nearest-prototype classification on class means of embeddings (Snell et al. 2017).

    After each experience the embeddings of its training data are folded into per-class running
    means (with counts, so the prototypes are exactly the class means of all data seen);
    evaluation scores are negative squared Euclidean distances to the prototypes. The encoder is
    `encoder` if given (a frozen or meta-learned network), else the model's `features(x)`.
    With `freeze` (default) the engine does not train the model, so the encoder never drifts
    and old prototypes stay valid; with `freeze=False` the model trains on each experience as
    usual and each class's prototype is computed with the features of the end of its
    experience (no data is kept to recompute it). `batch_size` bounds memory while embedding.
    """

    name = "prototypes"
    runs_model = True

    def __init__(self, encoder: nn.Module | None = None, freeze: bool = True,
                 batch_size: int = 1024) -> None:
        if encoder is not None and not callable(encoder):
            raise ConfigError(f"prototypes: encoder must be a module mapping inputs to embeddings, got {encoder!r}")
        self.encoder = encoder
        self.freeze = check_flag("prototypes: freeze", freeze)
        self.batch_size = check_count("prototypes: batch_size", batch_size)
        self.prototypes: ClassPrototypes | None = None

    @torch.no_grad()
    def embed(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, D) of `x` in evaluation mode, `batch_size` rows at a time."""
        module = self.encoder if self.encoder is not None else ctx.model
        encode = self.encoder if self.encoder is not None else getattr(ctx.model, "features", None)
        if encode is None:
            raise IncompatibleError(
                f"{self.name}: the model has no `features(x)` method; give an encoder with "
                "`prototypes(encoder=...)` or use a lifelong.models model"
            )
        was_training = module.training
        module.eval()
        try:
            parts = [encode(x[i:i + self.batch_size].to(ctx.device)).flatten(1)
                     for i in range(0, x.shape[0], self.batch_size)]
        finally:
            module.train(was_training)
        return torch.cat(parts)

    def train_data(self, ctx: Context, data: TrainData) -> TrainData:
        """Nothing to train on when the encoder is frozen (the engine then skips training)."""
        return TrainData(data.x[:0], data.y[:0], data.t[:0]) if self.freeze else data

    def after_experience(self, ctx: Context) -> None:
        z = self.embed(ctx, ctx.experience.train_x)
        if self.prototypes is None:
            self.prototypes = ClassPrototypes(ctx.stream.n_classes, z.shape[1], device=z.device)
        self.prototypes.update(z, ctx.experience.train_y.to(z.device))

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        if self.prototypes is None:  # nothing learned yet: every class scores alike
            return ctx.mask(torch.zeros(x.shape[0], ctx.stream.n_classes, device=ctx.device), t)
        return ctx.mask(self.prototypes.scores(self.embed(ctx, x)), t)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.prototypes is None else self.prototypes.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prototypes = ClassPrototypes.from_state(state) if state else None
