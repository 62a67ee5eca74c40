"""iCaRL (Rebuffi et al. 2017): herding exemplars, sigmoid distillation, nearest-mean classifier."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.continual.buffers import BalancedBuffer, herding_select
from lifelong.continual.importance import call_model, evaluating
from lifelong.continual.plugin import Batch, Context, Plugin, TrainData
from lifelong.core.checks import check_count
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import STRATEGIES


def icarl_loss(logits: Tensor, y: Tensor, old_logits: Tensor | None, old: Tensor,
               new: Tensor) -> tuple[Tensor, Tensor]:
    """(classification, distillation) terms of iCaRL's loss (Rebuffi et al. 2017, Alg. 3).

    Sigmoid binary cross-entropy summed over classes, averaged over samples: one-hot targets on
    the `new` classes, the previous model's sigmoid outputs as targets on the `old` classes.
    `old` / `new` are boolean masks over the output units.
    """
    targets = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits
    cls = bce(logits[:, new], targets[:, new], reduction="sum") / len(y)
    if old_logits is None or not bool(old.any()):
        return cls, logits.new_zeros(())
    soft = torch.sigmoid(old_logits[:, old[: old_logits.shape[1]]])
    return cls, bce(logits[:, old], soft, reduction="sum") / len(y)


def nearest_mean_scores(features: Tensor, means: Tensor, known: Tensor) -> Tensor:
    """Minus the distance of each normalised feature to each class mean; unknown classes lowest."""
    scores = -torch.cdist(F.normalize(features, dim=1), means)
    return scores.masked_fill(~known, torch.finfo(scores.dtype).min)


@STRATEGIES.register("icarl", family="replay", stores="buffer", memory="O(buffer)",
                     compute="Medium", forgetting="Low",
                     paper="Rebuffi et al. 2017, iCaRL: Incremental Classifier and "
                           "Representation Learning")
class ICaRL(Plugin):
    """iCaRL (Rebuffi et al. 2017): exemplar rehearsal, distillation and nearest-mean-of-exemplars.

    Each experience trains on its data joined with the exemplars, with sigmoid binary
    cross-entropy: one-hot targets on the new classes, the previous model's sigmoid outputs on
    the old ones (the engine's softmax cross-entropy is switched off through zero weights). After
    it, `memory_size` exemplars (paper: K = 2000) are split evenly over the classes seen: old
    sets keep their first exemplars, new classes get theirs by herding on L2-normalised
    `model.features`. Evaluation classifies by the nearest class mean of exemplar features.
    The previous model is a detached copy of the weights and buffers, run in eval mode with
    `torch.func.functional_call` (its BatchNorm statistics never change, no dropout).
    """

    name = "icarl"
    needs_fixed_width = True
    runs_model = True
    settings = ("class", "task")

    def __init__(self, memory_size: int = 2000) -> None:
        self.buffer = BalancedBuffer(check_count(f"{self.name}: memory_size", memory_size))
        self.previous: dict[str, Tensor] | None = None
        self.means: Tensor | None = None
        self.known: Tensor | None = None

    def _features(self, model: nn.Module, x: Tensor) -> Tensor:
        return F.normalize(model.features(x), dim=1)

    def _seen(self, ctx: Context, width: int) -> tuple[Tensor, Tensor]:
        new = torch.zeros(width, dtype=torch.bool, device=ctx.device)
        new[list(ctx.experience.classes)] = True
        old = torch.zeros_like(new)
        if self.known is not None:
            old[: len(self.known)] = self.known.to(ctx.device)
        return old & ~new, new

    def before_experience(self, ctx: Context) -> None:
        if not callable(getattr(ctx.model, "features", None)):
            raise IncompatibleError(f"{self.name} needs a model with a `features(x)` method "
                                    "(every lifelong.models.build_model model has one)")
        seen: dict[int, int] = {}
        for i, exp in enumerate(ctx.stream):
            again = sorted(c for c in exp.classes if c in seen)
            if again:
                raise IncompatibleError(
                    f"{self.name} learns new classes in every experience (one exemplar set and one "
                    f"mean per class, distillation on the classes seen before), but experience {i} "
                    f"repeats class(es) {again} of experience {seen[again[0]]}; use a split stream, "
                    "or replay, der++ or gem for streams whose experiences share classes")
            seen.update(dict.fromkeys(exp.classes, i))
        n_classes = ctx.stream.n_classes
        if self.buffer.capacity < n_classes:
            raise ConfigError(f"{self.name}: memory_size {self.buffer.capacity} is below the stream's "
                              f"{n_classes} classes, so some classes would keep no exemplar; "
                              f"set memory_size to at least {n_classes}")
        self.buffer.to(ctx.device)

    def train_data(self, ctx: Context, data: TrainData) -> TrainData:
        if not len(self.buffer):
            return data
        ex = self.buffer.view()
        return TrainData(torch.cat([data.x, ex["x"]]), torch.cat([data.y, ex["y"]]),
                         torch.cat([data.t, ex["t"]]))

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        return replace(batch, weight=torch.zeros(len(batch), device=batch.y.device))

    def loss_terms(self, ctx: Context, batch: Batch, outputs: Tensor) -> dict[str, Tensor]:
        old, new = self._seen(ctx, outputs.shape[1])
        old_logits = None
        if self.previous is not None:
            with torch.no_grad(), evaluating(ctx.model):
                old_logits = call_model(ctx.model, self.previous, batch.x, batch.t)
        cls, distill = icarl_loss(outputs, batch.y, old_logits, old, new)
        return {"bce": cls, "distill": distill}

    @torch.no_grad()
    def after_experience(self, ctx: Context) -> None:
        exp, model = ctx.experience, ctx.model
        old = int(self.known.sum()) if self.known is not None else 0
        per_class = -(-self.buffer.capacity // (old + len(exp.classes)))
        with evaluating(model):
            for c in exp.classes:
                idx = (exp.train_y == c).nonzero().squeeze(1)
                rank = herding_select(self._features(model, exp.train_x[idx]), per_class)
                rows = {"x": exp.train_x[idx[rank]], "y": exp.train_y[idx[rank]],
                        "t": exp.train_t()[idx[rank]]}
                self.buffer.add(rows, rows["y"], priority=-torch.arange(len(rank)))
            ex = self.buffer.view()
            feats = self._features(model, ex["x"])
        width = ctx.stream.n_classes
        sums = feats.new_zeros(width, feats.shape[1]).index_add_(0, ex["y"], feats)
        counts = torch.bincount(ex["y"], minlength=width)
        self.known = counts > 0
        self.means = F.normalize(sums / counts.clamp_min(1)[:, None].to(sums.dtype), dim=1)
        self.previous = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def predict(self, ctx: Context, x: Tensor, t: Tensor) -> Tensor | None:
        if self.means is None:
            return None
        scores = nearest_mean_scores(self._features(ctx.model, x), self.means.to(x.device),
                                     self.known.to(x.device))
        return ctx.mask(scores, t)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "previous": self.previous,
                "means": self.means, "known": self.known}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.previous, self.means, self.known = state["previous"], state["means"], state["known"]
