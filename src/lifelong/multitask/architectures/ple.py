"""Customized gate control (CGC) and progressive layered extraction (PLE) (Tang et al., 2020)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from lifelong.core.checks import check_counts
from lifelong.core.errors import ConfigError
from lifelong.core.registries import ARCHITECTURES
from lifelong.grad.layerwise import LayerwiseTrunks, layerwise_parameters
from lifelong.multitask.architectures.base import ModuleFactory, MultiTaskModel, build
from lifelong.multitask.architectures.mmoe import Gate, check_gate_input, mix
from lifelong.multitask.architectures.ple_levels import PLELevels
from lifelong.multitask.heads import feature_shape


def _experts(factory: ModuleFactory, n: int) -> nn.ModuleList:
    return nn.ModuleList(build(factory, "expert") for _ in range(n))


def _run(experts: nn.ModuleList, h: torch.Tensor) -> list[torch.Tensor]:
    return [e(h) for e in experts]


@ARCHITECTURES.register("ple", aliases=("PLE",), paper="Tang et al., 2020")
class PLE(MultiTaskModel):
    """Stacked extraction levels of task-specific and shared experts (Tang et al., 2020).

    At level j, task t's gate (input: t's previous output) mixes t's own experts and the shared
    experts; below the last level a shared gate (input: the previous shared output) mixes all
    experts into the shared path. Level 0 reads x; later levels read the experts' outputs, so
    their experts come from `upper_expert` (default: `expert`, for shape-preserving experts).
    `gate_weights` keys are "<task>/<level>" and "shared/<level>" (last forward, (B, n)).
    Defaults (ours; the paper tunes them per data set): 2 levels, 1 specific expert per task
    and 1 shared expert per level.
    """

    def __init__(self, expert: ModuleFactory, heads: Mapping[str, nn.Module],
                 input_shape: Sequence[int], levels: int = 2, n_specific: int = 1,
                 n_shared: int = 1, upper_expert: ModuleFactory | None = None) -> None:
        super().__init__(heads)
        check_counts("PLE", levels=levels, n_specific=n_specific, n_shared=n_shared)
        k = len(self.task_names)
        self.levels = levels
        self.task_experts = nn.ModuleList()
        self.shared_experts = nn.ModuleList()
        self.task_gates = nn.ModuleList()
        self.shared_gates = nn.ModuleList()
        in_dim = math.prod(input_shape)
        for j in range(levels):
            factory = expert if j == 0 or upper_expert is None else upper_expert
            self.task_experts.append(
                nn.ModuleDict({t: _experts(factory, n_specific) for t in self.task_names})
            )
            self.shared_experts.append(_experts(factory, n_shared))
            self.task_gates.append(
                nn.ModuleDict({t: Gate(in_dim, n_specific + n_shared) for t in self.task_names})
            )
            if j < levels - 1:
                self.shared_gates.append(Gate(in_dim, k * n_specific + n_shared))
            if j == 0:
                check_gate_input("PLE", self.shared_experts[0][0])
                out_shape = feature_shape(self.shared_experts[0][0], input_shape)
                in_dim = math.prod(out_shape)
                if levels > 1 and upper_expert is None and out_shape != tuple(input_shape):
                    raise ConfigError(
                        f"PLE: experts map inputs {tuple(input_shape)} to {out_shape}, so levels "
                        f"above the first need `upper_expert`, a factory of experts reading "
                        f"{out_shape}"
                    )
        self.gate_weights: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hs = dict.fromkeys(self.task_names, x)
        h_shared = x
        self.gate_weights = {}
        for j in range(self.levels):
            own = {t: _run(self.task_experts[j][t], hs[t]) for t in self.task_names}
            common = _run(self.shared_experts[j], h_shared)
            new = {t: self.task_mixture(j, t, hs[t], torch.stack(own[t] + common, dim=1)) for t in self.task_names}
            if j < self.levels - 1:
                h_shared = self.shared_mixture(j, h_shared, [o for t in self.task_names for o in own[t]] + common)
            hs = new
        return self.apply_heads(hs)

    def task_mixture(self, level: int, task: str, h: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """`task`'s gate at `level` on h mixing the stacked experts (its own, then the shared)."""
        g = self.task_gates[level][task](h)
        self.gate_weights[f"{task}/{level}"] = g.detach()
        return mix(g, experts)

    def shared_mixture(self, level: int, h: torch.Tensor, every: list[torch.Tensor]) -> torch.Tensor:
        """The shared gate at `level` (below the last) on h mixing every expert's output (each task's,
        then the shared)."""
        g = self.shared_gates[level](h)
        self.gate_weights[f"shared/{level}"] = g.detach()
        return mix(g, torch.stack(every, dim=1))

    def trunks(self) -> list[nn.Module] | None:
        """The shared experts when there is one level (CGC); above it they read mixtures, not x."""
        return list(self.shared_experts[0]) if self.levels == 1 else None

    def join(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(outputs, dim=1)

    def task_output(self, task: str, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """One level: `task`'s head on its gate's mixture of its own experts and the shared ones."""
        own = torch.stack(_run(self.task_experts[0][task], x), dim=1)
        return self.heads[task](self.task_mixture(0, task, x, torch.cat([own, features], dim=1)))

    def layerwise(self) -> LayerwiseTrunks | PLELevels | None:
        """One level (CGC): the layerwise Jacobian over the shared experts; more: level by level
        (`PLELevels`) when every expert below the last level and every last-level shared expert is a
        plain Sequential the layerwise backward takes; else None."""
        if self.levels == 1:
            return super().layerwise()
        lower = [e for j in range(self.levels - 1) for e in (*self.shared_experts[j], *(
            e for t in self.task_names for e in self.task_experts[j][t]))]
        if any(layerwise_parameters(e) is None for e in (*lower, *self.shared_experts[-1])):
            return None
        return PLELevels(self)

    def layerwise_output(self, task: str, x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        """`task`'s output from what the layerwise Jacobian gives it: one level, the shared experts'
        outputs; more (`PLELevels.copies`), its own and the shared experts' outputs at the level below
        the last, the last level's shared experts' outputs and, above two levels, its input at the
        level below the last."""
        if self.levels == 1:
            return super().layerwise_output(task, x, outputs)
        below, last = self.levels - 2, self.levels - 1
        n_own, n_common = len(self.task_experts[below][task]), len(self.shared_experts[below])
        h = outputs[-1] if self.levels > 2 else x
        h = self.task_mixture(below, task, h, torch.stack(outputs[:n_own + n_common], dim=1))
        top = [*_run(self.task_experts[last][task], h), *outputs[n_own + n_common:n_own + n_common + len(
            self.shared_experts[last])]]
        return self.heads[task](self.task_mixture(last, task, h, torch.stack(top, dim=1)))

    def task_parameters(self) -> list[nn.Parameter]:
        """Heads, last-level private experts, and private gates of the last two levels.

        Below those, private experts feed the shared gate and so reach every task.
        """
        return [p for t in self.task_names for p in self.own_parameters(t)]

    def own_parameters(self, task: str) -> list[nn.Parameter]:
        last = self.levels - 1
        return [*self.heads[task].parameters(), *self.task_experts[last][task].parameters(),
                *(p for j in range(max(0, last - 1), self.levels) for p in self.task_gates[j][task].parameters())]


@ARCHITECTURES.register("cgc", aliases=("CGC",), paper="Tang et al., 2020")
def cgc(expert: ModuleFactory, heads: Mapping[str, nn.Module], input_shape: Sequence[int],
        n_specific: int = 1, n_shared: int = 1) -> PLE:
    """Customized gate control: a single PLE extraction level (Tang et al., 2020)."""
    return PLE(expert, heads, input_shape, levels=1, n_specific=n_specific, n_shared=n_shared)
