"""Train a model on in-memory data in a chosen order and record test accuracy vs examples seen.

An ordering is a function `next_order(model, seen) -> indices` giving the pass that starts after
`seen` training examples; curricula, self-paced learning, baby steps and plain random order all
fit. Every ordering is trained for the same number of examples, and accuracy is measured at the
same counts, so curves compare at equal cost.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import ConfigError, DataError
from lifelong.core.optimizers import build_optimizer
from lifelong.curriculum.baby_step import BabyStep
from lifelong.curriculum.pacing import Pacing
from lifelong.curriculum.samplers import PacedCurriculum
from lifelong.curriculum.scorers import LossScorer, Scorer, apply_batched, check_labelled
from lifelong.curriculum.self_paced import SelfPaced
from lifelong.data.sources.base import SourceData

NextOrder = Callable[[nn.Module, int], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Curve:
    """Test accuracy after `examples` training examples; `fraction` of the data in use at that time."""

    examples: list[int]
    accuracy: list[float]
    fraction: list[float]

    def to_dict(self) -> dict[str, list]:
        return asdict(self)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of `x` that `model` classifies as `y` (eval mode, batched, no autograd graph)."""
    check_labelled(x, y, "accuracy")
    hits = apply_batched(model, x, lambda logits, rows: logits.argmax(1) == y[rows])
    return float(hits.float().mean())


def inject_label_noise(y: torch.Tensor, fraction: float, n_classes: int,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels with `fraction` of them replaced by a different class drawn uniformly; and that mask."""
    if not 0.0 <= fraction <= 1.0 or n_classes < 2:
        raise ConfigError(f"label noise fraction={fraction} must lie in [0, 1] and n_classes="
                          f"{n_classes} be >= 2")
    n_noisy = round(fraction * y.shape[0])
    noisy = torch.zeros(y.shape[0], dtype=torch.bool)
    noisy[torch.randperm(y.shape[0], generator=generator)[:n_noisy]] = True
    shift = torch.randint(1, n_classes, y.shape, generator=generator)
    out = torch.where(noisy.to(y.device), (y + shift.to(y.device)) % n_classes, y)
    return out, noisy.to(y.device)


def train_curve(model: nn.Module, data: SourceData, next_order: NextOrder, *, budget: int,
                batch_size: int = 32, lr: float = 1e-3, n_evals: int = 20,
                loss_fn: LossFn = F.cross_entropy,
                progress: Callable[[int], None] | None = None) -> Curve:
    """Train with Adam for `budget` examples in the order of `next_order`; evaluate `n_evals` times.

    Batches are index slices of the passes; a batch is cut short at each evaluation point so that
    every ordering is evaluated after exactly the same numbers of examples.
    """
    if budget < 1 or batch_size < 1 or n_evals < 1:
        raise ConfigError(f"train_curve: budget={budget}, batch_size={batch_size} and "
                          f"n_evals={n_evals} must all be >= 1")
    check_labelled(data.train_x, data.train_y, f"training data of {data.name!r}")
    n = data.train_y.shape[0]
    marks = sorted({math.ceil(budget * k / n_evals) for k in range(1, n_evals + 1)})  # < n_evals when budget is
    optimizer = build_optimizer("adam", model.parameters(), lr)
    seen, mark = 0, 0
    order = next_order(model, seen)
    curve = Curve([0], [accuracy(model, data.test_x, data.test_y)], [order.shape[0] / n])
    while seen < budget:
        if order.ndim != 1 or order.shape[0] == 0:
            raise DataError(f"train_curve: the ordering returned indices of shape {tuple(order.shape)} "
                            f"after {seen} examples; each pass needs a non-empty 1-D index tensor")
        pos = 0
        while pos < order.shape[0] and seen < budget:
            idx = order[pos : pos + min(batch_size, marks[mark] - seen)]
            pos += idx.shape[0]
            model.train()
            loss = loss_fn(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += idx.shape[0]
            if seen == marks[mark]:
                curve.examples.append(seen)
                curve.accuracy.append(accuracy(model, data.test_x, data.test_y))
                curve.fraction.append(order.shape[0] / n)
                mark += 1
                if progress is not None:
                    progress(seen)
        if seen < budget:
            order = next_order(model, seen)
    return curve


def random_order(n: int, generator: torch.Generator) -> NextOrder:
    """Plain shuffling: every pass is a fresh random permutation of all `n` examples."""
    return lambda model, seen: torch.randperm(n, generator=generator)


def curriculum_order(curriculum: PacedCurriculum, data: SourceData,
                     generator: torch.Generator) -> NextOrder:
    """Passes of `curriculum` over the training data, its time measured in examples seen."""
    return lambda model, seen: curriculum.order(seen, model, data.train_x, data.train_y, generator)


def self_paced_order(selector: SelfPaced, data: SourceData, generator: torch.Generator) -> NextOrder:
    """Self-paced passes (Kumar et al., 2010): examples whose current loss is below λ; λ grows after each."""
    scorer = LossScorer()
    return lambda model, seen: selector.next_order(scorer(model, data.train_x, data.train_y), generator)


def baby_step_order(steps: BabyStep, data: SourceData, val_x: torch.Tensor, val_y: torch.Tensor,
                    generator: torch.Generator) -> NextOrder:
    """Baby-step passes: before each pass after the first, the validation loss may add a bucket."""
    scorer = LossScorer()

    def next_order(model: nn.Module, seen: int) -> torch.Tensor:
        if seen:
            steps.observe(float(scorer(model, val_x, val_y).mean()))
        return steps.indices(generator)

    return next_order


def compare_with_random(model: nn.Module, data: SourceData, scorer: Scorer, pacing: Pacing, *,
                        epochs: int = 10, pace_until: float = 0.5, anti: bool = False,
                        balanced: bool = True, rescore_every: int | None = None,
                        batch_size: int = 32, lr: float = 1e-3,
                        n_evals: int = 20, seed: int = 0, loss_fn: LossFn = F.cross_entropy,
                        progress: Callable[[int], None] | None = None) -> dict[str, Curve]:
    """Curves of the curriculum and of random order, each from a copy of `model`, for `epochs`·N examples.

    The pacing reaches the whole data after `pace_until`·budget examples (> 1: never within the
    budget); scores are recomputed with the model in training every `rescore_every` examples
    (default: once per epoch, N; 0: once). `balanced` ranks difficulty within each class: without
    it a loss curriculum started from an untrained model can shut whole classes out for good.
    """
    n = data.train_y.shape[0]
    budget = epochs * n
    if not pace_until > 0:
        raise ConfigError(f"pace_until={pace_until} must be > 0 (a fraction of the training budget)")
    curriculum = PacedCurriculum(scorer, pacing, pace_until * budget, anti=anti, balanced=balanced,
                                 rescore_every=n if rescore_every is None else rescore_every)
    orders = {
        "curriculum": curriculum_order(curriculum, data, torch.Generator().manual_seed(seed)),
        "random": random_order(n, torch.Generator().manual_seed(seed)),
    }
    return {
        name: train_curve(copy.deepcopy(model), data, order, budget=budget, batch_size=batch_size,
                          lr=lr, n_evals=n_evals, loss_fn=loss_fn, progress=progress)
        for name, order in orders.items()
    }
