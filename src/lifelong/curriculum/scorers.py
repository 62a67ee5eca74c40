"""Difficulty scorers: one number per training example, higher = harder (Bengio et al., 2009).

Model-based scorers run the model in evaluation mode, in batches sliced from the tensors, under
`torch.inference_mode` (no autograd graph), and restore the model's training mode afterwards.
`forward(x_batch, rows)` replaces `model(x_batch)` when the logits need more than the inputs
(task labels, a class mask); `rows` is the slice of the batch in `x`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.checks import check_count, check_numbers
from lifelong.core.errors import ConfigError, DataError, LabelOutOfRangeError, ShapeMismatchError
from lifelong.core.registries import SCORERS

Forward = Callable[[torch.Tensor, slice], torch.Tensor]
BATCH = 1024


def check_labelled(x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Raise a typed error unless `y` holds one integer label per row of `x`."""
    if y.ndim != 1 or x.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ShapeMismatchError(f"{where}: inputs have shape {tuple(x.shape)} but labels "
                                 f"{tuple(y.shape)}; give 1-D labels, one per input row")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(f"{where}: labels have dtype {y.dtype}; use integer class labels")


def apply_batched(model: nn.Module, x: torch.Tensor,
                  fn: Callable[[torch.Tensor, slice], torch.Tensor], *,
                  forward: Forward | None = None, batch_size: int = BATCH) -> torch.Tensor:
    """`fn(logits, rows)` over slices of `x`, concatenated; in eval mode (then restored), no graph."""
    forward = forward or (lambda xb, rows: model(xb))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            parts = [fn(forward(x[i : i + batch_size], slice(i, i + batch_size)),
                        slice(i, i + batch_size)) for i in range(0, x.shape[0], batch_size)]
    finally:
        for module, training in modes:
            module.training = training
    return torch.cat(parts) if parts else x.new_zeros(0)


class Scorer:
    """Base of the scorers: `scorer(model, x, y, forward=None)` → (N,) float difficulties."""

    needs_model: ClassVar[bool] = True

    def __call__(self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                 forward: Forward | None = None) -> torch.Tensor:
        raise NotImplementedError


class ModelScorer(Scorer):
    """A difficulty computed from the model's logits and the labels, batch by batch."""

    def __init__(self, batch_size: int = BATCH) -> None:
        self.batch_size = check_count(f"{type(self).__name__}: batch_size", batch_size)

    def difficulty(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example difficulty of one batch."""
        raise NotImplementedError

    def __call__(self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                 forward: Forward | None = None) -> torch.Tensor:
        where = f"scorer {type(self).__name__}"
        if model is None:
            raise ConfigError(f"{where} needs the model to score with; pass it as the first argument")
        check_labelled(x, y, where)

        def batch(logits: torch.Tensor, rows: slice) -> torch.Tensor:
            labels = y[rows]
            if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
                raise ShapeMismatchError(f"{where}: the model returned shape {tuple(logits.shape)} "
                                         f"for {labels.shape[0]} inputs; expected (batch, classes)")
            if int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]:
                raise LabelOutOfRangeError(
                    f"{where}: labels span [{int(labels.min())}, {int(labels.max())}] but the "
                    f"model has {logits.shape[1]} outputs; labels must lie in [0, {logits.shape[1] - 1}]")
            return self.difficulty(logits.float(), labels)

        return apply_batched(model, x, batch, forward=forward, batch_size=self.batch_size)


@SCORERS.register("loss", aliases=("cross_entropy", "ce"), paper="Bengio et al. 2009; Kumar et al. 2010")
class LossScorer(ModelScorer):
    """Per-example cross-entropy of the model's prediction (self-paced learning's difficulty)."""

    def difficulty(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none")


@SCORERS.register("confidence", aliases=("label_confidence",), paper="Hacohen & Weinshall 2019")
class ConfidenceScorer(ModelScorer):
    """1 − the softmax probability of the true label: H&W's transfer score, so an example the
    model gets confidently wrong is among the hardest."""

    def difficulty(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - logits.softmax(1).gather(1, y[:, None]).squeeze(1)


@SCORERS.register("least_confidence", aliases=("uncertainty",), paper="Culotta & McCallum 2005")
class LeastConfidenceScorer(ModelScorer):
    """1 − the highest softmax probability, label-free: an unconfident prediction is hard."""

    def difficulty(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - logits.softmax(1).amax(1)


@SCORERS.register("margin", aliases=("smallest_margin",), paper="Scheffer et al. 2001")
class MarginScorer(ModelScorer):
    """1 − (top-1 − top-2 softmax probability): a small margin between the best two is hard."""

    def difficulty(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] < 2:
            raise ShapeMismatchError("MarginScorer needs at least 2 classes; the model has 1 output")
        top = logits.softmax(1).topk(2, dim=1).values
        return 1.0 - (top[:, 0] - top[:, 1])


@SCORERS.register("length", aliases=("sequence_length", "seq_len"), paper="Spitkovsky et al. 2010")
class LengthScorer(Scorer):
    """Number of entries different from `pad` per example (tokens of a padded sequence, ink of an image)."""

    needs_model = False

    def __init__(self, pad: float = 0) -> None:
        (self.pad,) = check_numbers("LengthScorer", pad=pad)

    def __call__(self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                 forward: Forward | None = None) -> torch.Tensor:
        check_labelled(x, y, "scorer LengthScorer")
        if x.ndim < 2:
            raise ShapeMismatchError(f"LengthScorer needs inputs of shape (N, length, ...); got "
                                     f"{tuple(x.shape)}")
        return (x != self.pad).flatten(1).sum(1).float()


@SCORERS.register("precomputed", aliases=("given", "external"), paper="Bengio et al. 2009")
class PrecomputedScorer(Scorer):
    """Difficulties given in advance (one finite number per example, in the order of the data)."""

    needs_model = False

    def __init__(self, scores: Any) -> None:
        try:
            scores = torch.as_tensor(scores, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"PrecomputedScorer: scores must be numbers, one per example; got {scores!r}") from None
        if scores.ndim != 1 or not bool(torch.isfinite(scores).all()):
            raise DataError(f"PrecomputedScorer: scores must be a 1-D tensor of finite numbers; "
                            f"got shape {tuple(scores.shape)}")
        self.scores = scores

    def __call__(self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                 forward: Forward | None = None) -> torch.Tensor:
        check_labelled(x, y, "scorer PrecomputedScorer")
        if self.scores.shape[0] != x.shape[0]:
            raise ShapeMismatchError(f"PrecomputedScorer holds {self.scores.shape[0]} scores but "
                                     f"the data has {x.shape[0]} examples; give one score each")
        return self.scores.to(x.device)


@SCORERS.register("transfer", aliases=("teacher", "teacher_student"), needs_teacher=True,
                  paper="Weinshall, Cohen & Amir 2018; Hacohen & Weinshall 2019")
class TransferScorer(Scorer):
    """Difficulty from another trained model (the teacher): its loss, confidence or margin.

    The student passed in is ignored; `signal` names a model-based scorer run on the teacher.
    """

    needs_model = False

    def __init__(self, teacher: nn.Module, signal: str = "loss", batch_size: int = BATCH) -> None:
        builder = SCORERS.get(signal) if signal in SCORERS else None
        if not (isinstance(builder, type) and issubclass(builder, ModelScorer)):
            raise ConfigError(f"TransferScorer: signal {signal!r} is not a model-based scorer; "
                              "use 'loss', 'confidence', 'least_confidence' or 'margin'")
        if not isinstance(teacher, nn.Module):
            raise ConfigError(f"TransferScorer: teacher must be a trained nn.Module, got {teacher!r}")
        self.teacher = teacher
        self.inner = builder(batch_size=batch_size)

    def __call__(self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                 forward: Forward | None = None) -> torch.Tensor:
        return self.inner(self.teacher, x, y)


class PeriodicScores:
    """Scores of `scorer`, recomputed when `every` units (epochs or steps) have passed; 0 = once."""

    def __init__(self, scorer: Scorer, every: float = 1) -> None:
        if every < 0:
            raise ConfigError(f"rescore_every={every} must be >= 0 (0 scores once)")
        self.scorer = scorer
        self.every = every
        self.scored_at: float | None = None

    def reset(self) -> None:
        """Forget when the scores were computed, so the next `refresh` scores again."""
        self.scored_at = None

    def due(self, t: float) -> bool:
        """Whether `refresh(t, ...)` would score again."""
        if self.scored_at is None:
            return True
        return self.every > 0 and t - self.scored_at >= self.every

    def refresh(self, t: float, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                forward: Forward | None = None) -> torch.Tensor | None:
        """New scores at time `t` when due, else None (the previous ones still hold)."""
        if not self.due(t):
            return None
        self.scored_at = t
        return self.scorer(model, x, y, forward)
