"""Task samplers for tasks with their own data sets, and per-task gradient accumulation.

A sampler holds the tasks' sizes N_t and gives, at each step, the probability of drawing each
task: proportional (p ∝ N_t), equal (p = 1/k), temperature (p ∝ N_t^{1/T}; T = 1 is
proportional, T → ∞ equal) and annealed (the exponent α = 1/T moves linearly over training,
Stickland & Murray, 2019). Draws take the engine's `torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lifelong.core.errors import ConfigError, DataError
from lifelong.core.registry import Registry

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
    """p_t ∝ N_t^α with α linear from `start` to `end` over `total_steps` (Stickland & Murray, 2019).

    The paper's defaults go from proportional (α = 1) towards equal (α = 0.2); `start=0, end=1`
    gives the opposite schedule (equal first, then proportional).
    """

    def __init__(self, sizes: Sequence[int], total_steps: int = 1000, start: float = 1.0,
                 end: float = 0.2) -> None:
        super().__init__(sizes)
        if total_steps < 1:
            raise ConfigError(f"annealed sampler: total_steps={total_steps} must be >= 1")
        self.total_steps, self.start, self.end = total_steps, start, end

    def exponent(self, step: int) -> float:
        frac = min(max(step, 0), self.total_steps) / self.total_steps
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
        total += torch.cat([g.reshape(-1) for g in grads])
        loss_sum += loss.detach().double() * share
    return loss_sum, total
