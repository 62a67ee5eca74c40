"""Multi-gate mixture-of-experts (Ma et al., 2018)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from lifelong.core.checks import check_count
from lifelong.core.errors import ConfigError
from lifelong.core.registries import ARCHITECTURES
from lifelong.multitask.architectures.base import ModuleFactory, MultiTaskModel, build
from lifelong.multitask.heads import reads_indices


def mix(gate: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Σ_e gate[b, e] · experts[b, e, ...] for gates (B, E) and expert outputs (B, E, ...)."""
    return (gate.view(*gate.shape, *[1] * (experts.ndim - 2)) * experts).sum(1)


def gate_input_error(where: str) -> ConfigError:
    """The ConfigError for gates, linear in the input, given token IDs (categories, not numbers)."""
    return ConfigError(
        f"{where}: the gates are linear in the input and cannot read token IDs (integer inputs), which are "
        f"categories, not numbers; use an architecture without input gates (hps, soft, cross_stitch) or embed "
        f"the tokens before the model and give it float inputs"
    )


def check_gate_input(arch: str, expert: nn.Module) -> None:
    """Raise a ConfigError when `expert` reads token IDs, which the gates would read too."""
    if reads_indices(expert):
        raise gate_input_error(arch)


class Gate(nn.Module):
    """Softmax gate over experts, linear in the flattened input (Ma et al., 2018)."""

    def __init__(self, in_features: int, n_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n_experts)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not h.is_floating_point():
            raise gate_input_error(f"gate given inputs of dtype {h.dtype}")
        return torch.softmax(self.linear(h.flatten(1)), dim=-1)


@ARCHITECTURES.register("mmoe", aliases=("MMoE", "MMOE"), paper="Ma et al., 2018")
class MMoE(MultiTaskModel):
    """Shared experts E_i and one softmax gate per task: f_t(x) = Σ_i g_t(x)_i E_i(x).

    Each task's head (its 'tower') reads its own mixture. Gates are linear in the flattened
    input (`input_shape` per sample), so token IDs are refused. Default 8 experts as in the paper's synthetic study.
    `gate_weights[task]` holds the last forward's gate distributions (B, n_experts).
    """

    def __init__(self, expert: ModuleFactory, heads: Mapping[str, nn.Module],
                 input_shape: Sequence[int], n_experts: int = 8) -> None:
        super().__init__(heads)
        check_count("MMoE n_experts", n_experts)
        self.experts = nn.ModuleList(build(expert, "expert") for _ in range(n_experts))
        check_gate_input("MMoE", self.experts[0])
        d = math.prod(input_shape)
        self.gates = nn.ModuleDict({t: Gate(d, n_experts) for t in self.task_names})
        self.gate_weights: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.join([e(x) for e in self.experts])
        return {t: self.task_output(t, x, features) for t in self.heads}

    def trunks(self) -> list[nn.Module]:
        return list(self.experts)

    def join(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(outputs, dim=1)

    def task_output(self, task: str, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """`task`'s tower on its gate's mixture of the stacked expert outputs (B, E, ...)."""
        gate = self.gates[task](x)
        self.gate_weights[task] = gate.detach()
        return self.heads[task](mix(gate, features))

    def own_parameters(self, task: str) -> list[nn.Parameter]:
        return [*self.gates[task].parameters(), *self.heads[task].parameters()]

    def task_parameters(self) -> list[nn.Parameter]:
        return [*self.gates.parameters(), *self.heads.parameters()]
