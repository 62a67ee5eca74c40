"""Curriculum learning: difficulty scorers, pacing functions, samplers, self-paced, baby steps, focal loss.

Importing this package registers the scorers, the pacing functions and the `curriculum` and
`self-paced` strategies of the continual engine.
"""

from lifelong.curriculum.baby_step import BabyStep
from lifelong.curriculum.focal import focal_loss
from lifelong.curriculum.pacing import (
    Competence,
    Exponential,
    Geometric,
    Linear,
    Pacing,
    Root,
    Step,
)
from lifelong.curriculum.plugin import CurriculumPlugin, SelfPacedPlugin
from lifelong.curriculum.samplers import (
    CurriculumSampler,
    PacedCurriculum,
    PrefixSampler,
    difficulty_order,
)
from lifelong.curriculum.scorers import (
    ConfidenceScorer,
    LengthScorer,
    LossScorer,
    MarginScorer,
    PeriodicScores,
    PrecomputedScorer,
    Scorer,
    TransferScorer,
)
from lifelong.curriculum.self_paced import SelfPaced, self_paced_selection
from lifelong.curriculum.train import (
    Curve,
    baby_step_order,
    compare_with_random,
    curriculum_order,
    inject_label_noise,
    random_order,
    self_paced_order,
    train_curve,
)

__all__ = [
    "BabyStep", "Competence", "ConfidenceScorer", "CurriculumPlugin", "CurriculumSampler", "Curve",
    "Exponential", "Geometric", "LengthScorer", "Linear", "LossScorer", "MarginScorer",
    "PacedCurriculum", "Pacing", "PeriodicScores", "PrecomputedScorer", "PrefixSampler", "Root",
    "Scorer", "SelfPaced", "SelfPacedPlugin", "Step", "TransferScorer", "baby_step_order",
    "compare_with_random", "curriculum_order", "difficulty_order",
    "focal_loss", "inject_label_noise", "random_order", "self_paced_order", "self_paced_selection",
    "train_curve",
]
