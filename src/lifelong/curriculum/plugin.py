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
    """Each epoch of an experience visits the easiest `pacing(t, total)` fraction of its data, shuffled.

    `scorer` and `pacing` are registered names (their arguments in `scorer_args`, `pacing_args`)
    or built objects. `t` counts epochs or steps (`unit`) since the experience began; the pacing
    reaches the whole data at `total` such units. Scores are recomputed every `rescore_every`
    units with the current model (0 = once per experience). `anti=True` starts from the hardest;
    `balanced` ranks difficulty within each class (Hacohen & Weinshall, 2019) so that no class is
    left out of the early epochs.
    Defaults: loss scorer, Platanios et al.'s square-root competence with c0 = 0.01 over 5 epochs.
    Everything is recomputed at each experience, so no state outlives one (checkpoints hold none).
    """

    name = "curriculum"

    def __init__(self, scorer: str | Scorer = "loss", pacing: str | Pacing = "competence",
                 total: float = 5, unit: str = "epoch", anti: bool = False, balanced: bool = True,
                 rescore_every: int = 1, scorer_args: dict[str, Any] | None = None,
                 pacing_args: dict[str, Any] | None = None) -> None:
        if unit not in UNITS:
            raise ConfigError(f"curriculum: unit={unit!r} must be one of {UNITS}")
        check_positive(f"curriculum: total ({unit}s)", total, allow_zero=False)
        check_positive("curriculum: rescore_every", rescore_every)
        check_flag("curriculum: anti", anti)
        check_flag("curriculum: balanced", balanced)
        self.unit = unit
        scorer = resolve(SCORERS, scorer, Scorer, scorer_args)
        self.runs_model = scorer.needs_model  # a model-based scorer runs the model on the whole experience
        self.curriculum = PacedCurriculum(scorer, resolve(PACINGS, pacing, Pacing, pacing_args), total,
                                          anti=anti, balanced=balanced, rescore_every=rescore_every)
        self.start_step = 0

    def before_experience(self, ctx: Context) -> None:
        self.curriculum.reset()
        self.start_step = ctx.step

    def elapsed(self, ctx: Context) -> int:
        """Epochs or steps since the current experience began."""
        return ctx.epoch if self.unit == "epoch" else ctx.step - self.start_step

    def epoch_order(self, ctx: Context, data: TrainData) -> torch.Tensor:
        return self.curriculum.order(self.elapsed(ctx), ctx.model, data.x, data.y, ctx.generator,
                                     context_forward(ctx, data))


@STRATEGIES.register("self-paced", aliases=("self_paced", "spl"), family="curriculum",
                     stores="nothing", memory="none", compute="a loss pass per epoch",
                     paper="Kumar, Packer & Koller 2010")
class SelfPacedPlugin(Plugin):
    """Self-paced learning: each epoch trains on the examples whose current loss is below λ; λ ← μ·λ.

    λ starts at the `start_fraction` quantile of the first losses of each experience unless `lam`
    is given. Defaults from Kumar et al. (2010): μ = 1.3, half the examples selected at first.
    λ restarts with each experience, so no state outlives one (checkpoints hold none).
    """

    name = "self-paced"
    runs_model = True

    def __init__(self, lam: float | None = None, mu: float = 1.3, start_fraction: float = 0.5) -> None:
        self.selector = SelfPaced(lam, mu, start_fraction)
        self.scorer = LossScorer()

    def before_experience(self, ctx: Context) -> None:
        self.selector.reset()

    def epoch_order(self, ctx: Context, data: TrainData) -> torch.Tensor:
        losses = self.scorer(ctx.model, data.x, data.y, context_forward(ctx, data))
        return self.selector.next_order(losses, ctx.generator)
