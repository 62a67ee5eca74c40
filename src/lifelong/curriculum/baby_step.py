"""Baby steps (Bengio et al. 2009; Spitkovsky, Alshawi & Jurafsky 2010): add a harder bucket on convergence."""

from __future__ import annotations

import math
from typing import Any

import torch

from lifelong.core.errors import ConfigError, DataError
from lifelong.curriculum.samplers import PrefixSampler, allowed_count


class BabyStep(PrefixSampler):
    """Difficulty buckets introduced one at a time, keeping the easier ones (the "baby steps").

    The data is cut into `n_buckets` buckets of equal size by difficulty rank. Training starts on
    the easiest; after each evaluation call `observe(validation_loss)`: when the loss has not
    improved on its best by more than `min_delta` for `patience` evaluations in a row, training is
    taken to have converged on the current buckets and the next one is added. `labels` makes every
    bucket class-balanced (see `difficulty_order`). Defaults: 5 buckets,
    patience 2, min_delta 0 (Spitkovsky et al. use one bucket per sentence length and train each
    step to convergence; Bengio et al. use two stages).
    """

    def __init__(self, scores: torch.Tensor, n_buckets: int = 5, patience: int = 2,
                 min_delta: float = 0.0, *, anti: bool = False, labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> None:
        if n_buckets < 1 or patience < 1 or min_delta < 0:
            raise ConfigError(f"BabyStep: n_buckets={n_buckets} and patience={patience} must be "
                              f">= 1 and min_delta={min_delta} >= 0")
        super().__init__(scores, anti=anti, labels=labels, generator=generator)
        self.n_buckets = n_buckets
        self.patience = patience
        self.min_delta = min_delta
        self.stage = 0
        self.best = math.inf
        self.waited = 0

    def n_allowed(self) -> int:
        return allowed_count(self.order.shape[0], (self.stage + 1) / self.n_buckets)

    @property
    def done(self) -> bool:
        """Whether every bucket is in use."""
        return self.stage == self.n_buckets - 1

    def observe(self, val_loss: float) -> bool:
        """Record a validation loss; True when it was a plateau and the next bucket was added."""
        if not math.isfinite(val_loss):
            raise DataError(f"BabyStep.observe: validation loss {val_loss} is not finite")
        if val_loss < self.best - self.min_delta:
            self.best, self.waited = val_loss, 0
            return False
        self.waited += 1
        if self.waited < self.patience or self.done:
            return False
        self.stage += 1
        self.best, self.waited = math.inf, 0
        return True

    def state_dict(self) -> dict[str, Any]:
        """Stage and plateau counters (the order is rebuilt from the scores)."""
        return {"stage": self.stage, "best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.stage, self.best, self.waited = int(state["stage"]), float(state["best"]), int(state["waited"])
