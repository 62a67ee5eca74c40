"""Curriculum strategies for the continual engine: each epoch visits the examples a curriculum allows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lifelong.continual.plugin import Context, Plugin, TrainData
from lifelong.core.checks import check_flag, check_positive
from lifelong.core.errors import ConfigError
from lifelong.core.registries import PACINGS, SCORERS, STRATEGIES
from lifelong.core.registry import Registry
from lifelong.curriculum.pacing import Pacing
from lifelong.curriculum.samplers import PacedCurriculum
from lifelong.curriculum.scorers import Forward, LossScorer, Scorer
from lifelong.curriculum.self_paced import SelfPaced
from lifelong.data.stream import Stream

UNITS = ("epoch", "step")


def resolve(registry: Registry, value: Any, kind: type, args: dict[str, Any] | None) -> Any:
    """`value` when it is already a built `kind` (no `args` then), else `registry.build(value, **args)`."""
    if args is not None and not isinstance(args, Mapping):
        raise ConfigError(f"{registry.kind} arguments must be a mapping of names to values, got {args!r}")
    if not isinstance(value, kind):
        return registry.build(value, **(args or {}))
    if args:
        raise ConfigError(f"{registry.kind} arguments {sorted(args)} given with a built "
                          f"{type(value).__name__}; pass a registered name instead")
    return value


def context_forward(ctx: Context, data: TrainData) -> Forward:
    """Logits as the engine computes them (task labels, class mask) for rows of `data`."""
    return lambda xb, rows: ctx.mask(ctx.forward(xb, data.t[rows]), data.t[rows])


@STRATEGIES.register("curriculum", aliases=("curriculum_learning", "paced"), family="curriculum",
                     stores="difficulty scores", memory="O(n) scores", compute="a scoring pass per rescore",
                     paper="Bengio et al. 2009; Platanios et al. 2019")
class CurriculumPlugin(Plugin):
    """Trains each experience easiest first, on the `pacing(t, total)` fraction of its data allowed at t.

    `t` counts steps or epochs (`unit`) since the experience began. By steps (Platanios et al. 2019,
    Algorithm 1), the batch at step t draws its rows uniformly from the easiest `pacing(t, total)`
    fraction; an epoch is as many steps as a plain one. By epochs, each epoch visits that fraction
    once, shuffled. The pacing reaches the whole data at t = `total`; unset, `total` is half of each
    experience (as `compare_with_random`'s default; an experience of one step trains on all its data),
    and a `total` beyond the experience's last step or epoch (its hardest examples never trained on)
    is refused: by epochs before the run, by steps when the experience starts. `scorer` and
    `pacing` are registered names (their arguments in `scorer_args`, `pacing_args`) or built
    objects. Scores are recomputed at the start of an epoch once `rescore_every` units have passed
    (0 = once per experience). `anti=True` starts from the hardest; `balanced` ranks difficulty
    within each class (Hacohen & Weinshall, 2019) so that no class is left out early.
    Defaults: loss scorer, Platanios et al.'s square-root competence with c0 = 0.01, by steps.
    Everything is recomputed at each experience, so no state outlives one (checkpoints hold none).
    """

    name = "curriculum"

    def __init__(self, scorer: str | Scorer = "loss", pacing: str | Pacing = "competence",
                 total: float | None = None, unit: str = "step", anti: bool = False, balanced: bool = True,
                 rescore_every: int = 1, scorer_args: dict[str, Any] | None = None,
                 pacing_args: dict[str, Any] | None = None) -> None:
        if unit not in UNITS:
            raise ConfigError(f"curriculum: unit={unit!r} must be one of {UNITS}")
        if total is not None:
            check_positive(f"curriculum: total ({unit}s)", total, allow_zero=False)
        self.total = total
        check_positive("curriculum: rescore_every", rescore_every)
        check_flag("curriculum: anti", anti)
        check_flag("curriculum: balanced", balanced)
        self.unit = unit
        scorer = resolve(SCORERS, scorer, Scorer, scorer_args)
        self.runs_model = scorer.needs_model  # a model-based scorer runs the model on the whole experience
        self.curriculum = PacedCurriculum(scorer, resolve(PACINGS, pacing, Pacing, pacing_args), total or 1,
                                          anti=anti, balanced=balanced, rescore_every=rescore_every)
        self.start_step = 0

    def before_experience(self, ctx: Context) -> None:
        self.curriculum.reset()
        self.start_step = ctx.step

    def problems(self, stream: Stream, epochs: int, batch_size: int) -> list[str]:
        # by steps, the length depends on the data each experience trains on (after e.g. joint's or
        # cumulative's train_data): `epoch_order` checks it when the experience starts
        problem = self.length_problem(epochs) if self.unit == "epoch" else None
        return [problem] if problem else []

    def units(self, n: int, epochs: int, batch_size: int) -> int:
        """How many units (steps or epochs) an experience of `n` rows trains for."""
        return epochs if self.unit == "epoch" else epochs * -(-n // batch_size)

    def length_problem(self, units: int) -> str | None:
        """Why the curriculum cannot pace an experience of `units` steps or epochs as asked, or None (by
        steps and unset `total`, an experience of one step has nothing to pace: it trains on all its data)."""
        if units < 2 and (self.unit == "epoch" or self.total is not None):
            return (f"curriculum: an experience that trains for one {self.unit} cannot be paced by "
                    f"{self.unit}s; " + ("use unit='step' or more epochs" if self.unit == "epoch" else
                                         "use more epochs or a smaller batch_size"))
        if self.total is not None and self.total > units - 1:
            return (f"curriculum: total={self.total:g} {self.unit}s, but an experience trains for {units} "
                    f"(the last at t = {units - 1}), so its hardest examples would never be trained on; "
                    f"set total <= {units - 1}, or leave it unset (half of each experience)")
        return None

    def elapsed(self, ctx: Context) -> int:
        """Epochs or steps since the current experience began."""
        return ctx.epoch if self.unit == "epoch" else ctx.step - self.start_step

    def epoch_order(self, ctx: Context, data: TrainData) -> torch.Tensor | None:
        units = self.units(len(data), ctx.epochs, ctx.batch_size)
        problem = self.length_problem(units)
        if problem:
            raise ConfigError(problem)
        if units < 2:
            return None
        self.curriculum.total = units / 2 if self.total is None else self.total
        args = (ctx.model, data.x, data.y, ctx.generator, context_forward(ctx, data))
        if self.unit == "epoch":
            return self.curriculum.order(self.elapsed(ctx), *args)
        return self.curriculum.batches(self.elapsed(ctx), ctx.batch_size, *args)


@STRATEGIES.register("self-paced", aliases=("self_paced", "spl"), family="curriculum",
                     stores="nothing", memory="none", compute="a loss pass per epoch",
                     paper="Kumar, Packer & Koller 2010")
class SelfPacedPlugin(Plugin):
    """Self-paced learning: each epoch trains on the examples whose current loss is below λ; λ ← μ·λ.

    λ starts at the `start_fraction` quantile of the first losses of each experience unless `lam`
    is given. Defaults from Kumar et al. (2010): μ = 1.3, half the examples selected at first. The
    last epoch of an experience trains on every example, as SPL ends with all of them selected
    (with one epoch there is nothing to select before it). λ restarts with each experience, so no
    state outlives one (checkpoints hold none).
    """

    name = "self-paced"
    runs_model = True

    def __init__(self, lam: float | None = None, mu: float = 1.3, start_fraction: float = 0.5) -> None:
        self.selector = SelfPaced(lam, mu, start_fraction)
        self.scorer = LossScorer()

    def before_experience(self, ctx: Context) -> None:
        self.selector.reset()

    def epoch_order(self, ctx: Context, data: TrainData) -> torch.Tensor | None:
        if ctx.epoch == ctx.epochs - 1:
            return None
        losses = self.scorer(ctx.model, data.x, data.y, context_forward(ctx, data))
        return self.selector.next_order(losses, ctx.generator)
