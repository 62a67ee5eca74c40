"""Task samplers for tasks with their own data sets, and per-task gradient accumulation.

A sampler holds the tasks' sizes N_t and gives, at each step, the probability of drawing each
task: proportional (p ∝ N_t), equal (p = 1/k), temperature (p ∝ N_t^{1/T}; T = 1 is
proportional, T → ∞ equal) and annealed (the exponent α = 1/T moves linearly over training,
Stickland & Murray, 2019; the trainer tells it the run's length through `schedule`). Draws take
the engine's `torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lifelong.core.checks import check_count, check_numbers
from lifelong.core.errors import ConfigError, DataError
from lifelong.core.registry import Registry
from lifelong.grad.jacobian import flatten

SAMPLERS: Registry = Registry("task sampler")


class TaskSampler:
    """p_t ∝ N_t^α(step): the base of every sampler; subclasses choose α."""

    def __init__(self, sizes: Sequence[int]) -> None:
        sizes_t = torch.as_tensor(list(sizes), dtype=torch.float64)
        if sizes_t.ndim != 1 or sizes_t.numel() == 0 or bool((sizes_t <= 0).any()):
            raise DataError(f"task sampler: sizes {list(sizes)} must be positive counts, one per task")
        self.sizes = sizes_t

    def exponent(self, step: int) -> float:
        """α at `step` (1 = proportional, 0 = equal)."""
        raise NotImplementedError

    def schedule(self, epochs: int, steps_per_epoch: int) -> None:
        """Told the run's length by the trainer; a no-op unless α moves over training."""

    def probabilities(self, step: int = 0) -> torch.Tensor:
        """Probability of drawing each task at `step` (float64, sums to 1)."""
        logits = self.exponent(step) * self.sizes.log()
        return torch.softmax(logits, dim=0)

    def sample(self, step: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` task indices drawn with replacement from `probabilities(step)`."""
        return torch.multinomial(self.probabilities(step), n, replacement=True, generator=generator)


@SAMPLERS.register("temperature", aliases=("temp",))
class TemperatureSampler(TaskSampler):
    """p_t ∝ N_t^{1/T}; T in [2, 5] is the usual range (default 2, as in Arivazhagan et al., 2019)."""

    def __init__(self, sizes: Sequence[int], temperature: float = 2.0) -> None:
        super().__init__(sizes)
        if not temperature > 0:
            raise ConfigError(f"temperature sampler: temperature={temperature} must be > 0")
        self.temperature = temperature

    def exponent(self, step: int) -> float:
        return 1.0 / self.temperature


@SAMPLERS.register("proportional", aliases=("size",))
def proportional(sizes: Sequence[int]) -> TaskSampler:
    """p_t ∝ N_t: each sample is equally likely, large tasks dominate."""
    return TemperatureSampler(sizes, temperature=1.0)


@SAMPLERS.register("equal", aliases=("uniform", "round_robin"))
def equal(sizes: Sequence[int]) -> TaskSampler:
    """p_t = 1/k: small tasks are up-sampled."""
    return TemperatureSampler(sizes, temperature=float("inf"))


@SAMPLERS.register("annealed", aliases=("anneal",))
class AnnealedSampler(TaskSampler):
    """p_t ∝ N_t^α with α linear from `start` at the first epoch to `end` at the last: with the
    paper's defaults α = 1 − 0.8 (e − 1)/(E − 1) in epoch e = 1..E (Stickland & Murray, 2019).

    The trainer gives the run's epochs and steps per epoch through `schedule` (one epoch: α =
    `start`). `total_steps` instead moves α at every step, from `start` at step 0 to `end` at step
    `total_steps` − 1, and is kept whatever the trainer says. `start=0, end=1` gives the opposite
    schedule (equal first, then proportional).
    """

    def __init__(self, sizes: Sequence[int], total_steps: int | None = None, start: float = 1.0,
                 end: float = 0.2) -> None:
        super().__init__(sizes)
        self.start, self.end = check_numbers("annealed sampler", start=start, end=end)
        self.fixed = check_count("annealed sampler: total_steps", total_steps, allow_none=True) is not None
        self.periods, self.period_steps = (total_steps, 1) if self.fixed else (None, 1)

    def schedule(self, epochs: int, steps_per_epoch: int) -> None:
        """Anneal over `epochs` epochs of `steps_per_epoch` steps (unless `total_steps` was given)."""
        if not self.fixed:
            self.periods = check_count("annealed sampler: epochs", epochs)
            self.period_steps = check_count("annealed sampler: steps_per_epoch", steps_per_epoch)

    def exponent(self, step: int) -> float:
        if self.periods is None:
            raise ConfigError("annealed sampler: the length of the run is unknown; pass total_steps, or "
                              "train with MultiTaskTrainer, which schedules it over the run's epochs")
        period = min(max(step, 0) // self.period_steps, self.periods - 1)
        frac = period / (self.periods - 1) if self.periods > 1 else 0.0
        return self.start + (self.end - self.start) * frac


def build_sampler(name: str, sizes: Sequence[int], **kwargs) -> TaskSampler:
    """The sampler registered as `name` over tasks of the given sizes."""
    return SAMPLERS.build(name, sizes, **kwargs)


def accumulated_gradient(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                         params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                         micro_batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, flat gradient) of `loss_fn` on a batch, by one backward per micro-batch.

    `loss_fn(x, y)` must return a mean over its samples; each micro-batch's gradient is weighted
    by its share of the batch, so the sum equals the gradient of the whole batch's mean loss
    while only one micro-batch's graph is alive at a time (per-task gradient accumulation).
    """
    n = int(x.shape[0])
    size = n if micro_batch is None else micro_batch
    if size < 1:
        raise ConfigError(f"micro_batch={micro_batch} must be >= 1")
    total = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype,
                        device=params[0].device)
    loss_sum = torch.zeros((), dtype=torch.float64)
    for start in range(0, n, size):
        xb, yb = x[start:start + size], y[start:start + size]
        share = xb.shape[0] / n
        loss = loss_fn(xb, yb)
        grads = torch.autograd.grad(loss * share, params, allow_unused=True, materialize_grads=True)
        total += flatten(grads)
        loss_sum += loss.detach().double() * share
    return loss_sum, total
