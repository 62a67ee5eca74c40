"""Memory Aware Synapses (Aljundi et al. 2018): importance from the output's sensitivity, label-free.

Ω_i = (1/N) Σ_n |∂‖f(x_n)‖²₂ / ∂θ_i| on the inputs of each experience (no labels needed),
added to the previous tasks' Ω; later experiences add λ Σ_i Ω_i (θ_i − θ*_i)².
"""

from __future__ import annotations

import torch
from torch import nn

from lifelong.continual.importance import param_shapes, sample_rows
from lifelong.continual.per_sample import per_sample_mean
from lifelong.continual.plugin import Context
from lifelong.continual.plugins.anchored import AnchoredPenalty
from lifelong.core.checks import check_count, check_positive
from lifelong.core.registries import STRATEGIES


def _squared_norm(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return out.square().sum()


def output_sensitivity(model: nn.Module, x: torch.Tensor, t: torch.Tensor | None = None, *,
                       chunk_size: int = 16) -> torch.Tensor:
    """MAS importance (Aljundi et al. 2018, eq. 4 with the squared ℓ2 norm): (1/N) Σ_n |∂‖f(x_n)‖²/∂θ|.

    Needs only inputs (task labels `t` select a multi-head model's head); f is the model's
    output (logits). Absolute values are taken per sample, vectorised with vmap.
    """
    return per_sample_mean(model, _squared_norm, x, t, transform=torch.Tensor.abs_,
                           chunk_size=chunk_size)


@STRATEGIES.register("mas", aliases=("memory_aware_synapses", "masplugin"),
                     family="regularisation", stores="parameters", memory="O(params)",
                     compute="Medium", forgetting="Moderate",
                     paper="Aljundi et al. 2018, Memory Aware Synapses: Learning what (not) to forget")
class MAS(AnchoredPenalty):
    """MAS: loss + λ Σ_i Ω_i (θ_i − θ*_i)², Ω = Σ over past tasks of each task's output sensitivity.

    Within a task Ω is the average over samples (the authors' running average); across tasks the
    Ω are added, as in the authors' code. λ = 1 is the paper's value. The sensitivity is measured
    on `samples` random training inputs of each experience (None: all), labels unused.
    """

    name = "mas"
    runs_model = True

    def __init__(self, mas_lambda: float = 1.0, samples: int | None = 128, chunk_size: int = 16) -> None:
        super().__init__(check_positive("mas: mas_lambda", mas_lambda))
        self.samples = check_count("mas: samples", samples, allow_none=True)
        self.chunk_size = check_count("mas: chunk_size", chunk_size)

    def after_experience(self, ctx: Context) -> None:
        theta = self.theta(ctx.model).detach()
        exp = ctx.experience
        x, t = sample_rows(self.samples, ctx.generator, exp.train_x, exp.train_t())
        importance = output_sensitivity(ctx.model, x, t, chunk_size=self.chunk_size)
        self.weight = importance if self.weight is None else self.weight + importance
        self.anchor = theta
        self.shapes = param_shapes(ctx.model)
