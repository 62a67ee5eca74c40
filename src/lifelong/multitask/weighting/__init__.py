"""Multi-task weightings, two kinds: loss-based (`combine` the task losses into one total) and
gradient-based (`aggregate` the per-task gradients through `lifelong.grad`); one name builds
either with `build_weighting`."""

from __future__ import annotations

from typing import Any

from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting
from lifelong.multitask.weighting.dwa import DWA
from lifelong.multitask.weighting.famo import FAMO
from lifelong.multitask.weighting.gls import GLS
from lifelong.multitask.weighting.gradient import GradientWeighting
from lifelong.multitask.weighting.gradnorm import GradNorm
from lifelong.multitask.weighting.imtl_l import IMTLL
from lifelong.multitask.weighting.rlw import RLW
from lifelong.multitask.weighting.stch import STCH
from lifelong.multitask.weighting.uncertainty import Uncertainty
from lifelong.multitask.weighting.uniform import Uniform


def build_weighting(name: str, n_tasks: int, **kwargs: Any) -> LossWeighting | GradientWeighting:
    """The weighting registered as `name` (or an alias: "EW", "UW", "PCGrad"…) for `n_tasks` tasks;
    every keyword is checked against its builder's signature at once."""
    return WEIGHTINGS.build(name, n_tasks, **kwargs)


__all__ = [
    "DWA", "FAMO", "GLS", "GradNorm", "GradientWeighting", "IMTLL", "LossWeighting", "RLW",
    "STCH", "Uncertainty", "Uniform", "build_weighting",
]
