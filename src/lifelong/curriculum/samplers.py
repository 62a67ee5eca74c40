"""Curriculum samplers: a random order over the easiest fraction of the data allowed by a pacing.

Both samplers here are `torch.utils.data.Sampler`s (pass them to a DataLoader, or call
`indices()` for a tensor of indices to slice in-memory data with) and draw their shuffles from a
`torch.Generator`, never from global random state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import Sampler

from lifelong.core.errors import ConfigError, DataError
from lifelong.curriculum.pacing import Pacing
from lifelong.curriculum.scorers import Forward, PeriodicScores, Scorer


def difficulty_order(scores: torch.Tensor, anti: bool = False,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """Indices from easiest to hardest (ties in data order); exactly reversed when `anti`.

    With `labels`, examples are ordered by their difficulty rank within their class, relative to
    the class size, so every prefix holds about the same fraction of each class (the class-
    balanced curriculum of Hacohen & Weinshall, 2019).
    """
    if scores.ndim != 1 or scores.shape[0] == 0:
        raise DataError(f"difficulty scores must be a non-empty 1-D tensor, one per example; got "
                        f"shape {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise DataError("difficulty scores contain NaN or infinite values; check the scorer")
    order = torch.argsort(scores, stable=True)
    if labels is not None:
        if labels.shape != scores.shape:
            raise DataError(f"labels of shape {tuple(labels.shape)} do not match the scores' "
                            f"{tuple(scores.shape)}; give one label per scored example")
        order = order[torch.argsort(labels[order], stable=True)]  # by class, then difficulty
        _, counts = torch.unique_consecutive(labels[order], return_counts=True)
        starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        sizes = torch.repeat_interleave(counts, counts)
        quantile = (torch.arange(order.shape[0], device=order.device) - starts + 1) / sizes
        order = order[torch.argsort(quantile, stable=True)]
    return order.flip(0) if anti else order


def allowed_count(n: int, fraction: float) -> int:
    """How many of `n` examples a fraction allows: ⌈fraction·n⌉, at least 1, at most n."""
    return min(n, max(1, math.ceil(round(fraction * n, 6))))


def shuffled_prefix(order: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """The first `n` entries of `order` in a random order drawn from `generator`."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return order[:n][perm.to(order.device)]


class PrefixSampler(Sampler[int]):
    """A random order over a prefix of the difficulty order; subclasses say how long the prefix is."""

    def __init__(self, scores: torch.Tensor, *, anti: bool = False,
                 labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.order = difficulty_order(scores, anti, labels)
        self.anti = anti
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def n_allowed(self) -> int:
        """How many examples the current stage allows."""
        raise NotImplementedError

    def allowed(self) -> torch.Tensor:
        """Indices of the allowed examples, easiest first (hardest first for anti-curriculum)."""
        return self.order[: self.n_allowed()]

    def indices(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One pass: the allowed examples in a random order (from `generator` or the sampler's)."""
        return shuffled_prefix(self.order, self.n_allowed(), generator or self.generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.n_allowed()


class CurriculumSampler(PrefixSampler):
    """Easiest `pacing(t, total)` fraction of the data, shuffled (Bengio et al. 2009; Platanios et al. 2019).

    Call `set_time(t)` (alias `set_epoch`, as for DistributedSampler) before each pass; `t` and
    `total` share a unit (epochs or steps). `anti=True` admits the hardest examples first;
    `labels` balances the classes in every prefix (see `difficulty_order`).
    """

    def __init__(self, scores: torch.Tensor, pacing: Pacing, total: float, *, anti: bool = False,
                 labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> None:
        if not total > 0:
            raise ConfigError(f"CurriculumSampler: total={total} (the curriculum's length in "
                              "epochs or steps) must be > 0")
        super().__init__(scores, anti=anti, labels=labels, generator=generator)
        self.pacing = pacing
        self.total = total
        self.t: float = 0.0

    def set_time(self, t: float) -> None:
        """Move the schedule to step (or epoch) `t`."""
        self.t = t

    set_epoch = set_time

    @property
    def fraction(self) -> float:
        """The fraction of the data allowed now."""
        return self.pacing(self.t, self.total)

    def n_allowed(self) -> int:
        return allowed_count(self.order.shape[0], self.fraction)


class PacedCurriculum:
    """Scorer, pacing and periodic re-scoring together: the order of the pass starting at time t.

    Used by the continual plugin and the training helper; `rescore_every` is in the unit of t
    (0 scores once). New data of another size is scored again. `balanced` ranks examples
    within their class (Hacohen & Weinshall, 2019).
    """

    def __init__(self, scorer: Scorer, pacing: Pacing, total: float, *, anti: bool = False,
                 balanced: bool = False, rescore_every: float = 1) -> None:
        self.periodic = PeriodicScores(scorer, rescore_every)
        self.pacing = pacing
        self.total = total
        self.anti = anti
        self.balanced = balanced
        self.sampler: CurriculumSampler | None = None

    def reset(self) -> None:
        """Forget the scores (e.g. before a new experience)."""
        self.periodic.reset()
        self.sampler = None

    def _scored(self, t: float, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator, forward: Forward | None) -> CurriculumSampler:
        """The sampler over `x`'s difficulty order, scored again when due (or when `x` is new data)."""
        if self.sampler is None or self.sampler.order.shape[0] != y.shape[0]:
            self.periodic.reset()
        scores = self.periodic.refresh(t, model, x, y, forward)
        if scores is not None:
            self.sampler = CurriculumSampler(scores, self.pacing, self.total, anti=self.anti,
                                             labels=y if self.balanced else None,
                                             generator=generator)
        return self.sampler

    def order(self, t: float, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
              generator: torch.Generator, forward: Forward | None = None) -> torch.Tensor:
        """Indices of `x` for the pass starting at `t`: the allowed easiest fraction, shuffled."""
        sampler = self._scored(t, model, x, y, generator, forward)
        sampler.set_time(t)
        return sampler.indices(generator)

    def batches(self, t: int, batch_size: int, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator, forward: Forward | None = None) -> torch.Tensor:
        """Indices of `x` for one epoch of len(x) rows from step `t`, in batches of `batch_size`: the
        rows of the batch at step t + b are drawn uniformly, with replacement, from the easiest
        `pacing(t + b, total)` fraction (Platanios et al. 2019, Algorithm 1)."""
        sampler = self._scored(t, model, x, y, generator, forward)
        n = sampler.order.shape[0]
        steps = -(-n // batch_size)
        allowed = torch.tensor([allowed_count(n, self.pacing(t + b, self.total)) for b in range(steps)],
                               dtype=torch.float64)
        per_row = allowed.repeat_interleave(batch_size)[:n].to(generator.device)
        picks = (torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64) * per_row).long()
        return sampler.order[picks.to(sampler.order.device)]
