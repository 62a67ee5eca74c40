"""Cross-stitch networks: one column per task, mixed after each stage (Misra et al., 2016)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from lifelong.core.checks import check_count, check_list, check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import ARCHITECTURES
from lifelong.grad.layerwise import layerwise_parameters
from lifelong.grad.stitched import StitchedColumns
from lifelong.multitask.architectures.base import ModuleFactory, MultiTaskModel, build


def stage_ends(column: nn.Sequential) -> list[int]:
    """Default stitch points: after each child followed by a child with parameters, and the last."""
    children = list(column)
    has_params = [any(True for _ in c.parameters()) for c in children]
    return [i for i in range(len(children) - 1) if has_params[i + 1]] + [len(children) - 1]


def stitch_init(k: int, self_weight: float) -> torch.Tensor:
    """k×k mixing matrix with `self_weight` on the diagonal, rows summing to 1."""
    if k == 1:
        return torch.ones(1, 1)
    off = (1.0 - self_weight) / (k - 1)
    return torch.full((k, k), off) + (self_weight - off) * torch.eye(k)


@ARCHITECTURES.register("cross_stitch", aliases=("Cross_stitch", "cross-stitch", "CrossStitch"),
                        paper="Misra et al., 2016")
class CrossStitch(MultiTaskModel):
    """Task columns whose activations are linearly mixed by learned k×k units (Misra et al., 2016).

    After stage l, column t receives x̃_t = Σ_s α^l_{ts} x_s. The backbone factory must return an
    `nn.Sequential`; `stitch_after` lists child indices after which to stitch (default: at each
    boundary before a layer with parameters, and at the end). Units start at α_S = 0.9 on the
    diagonal and α_D = 0.1 spread over the other columns, the paper's best initialisation.
    All column parameters and units are shared (every task's loss reaches them).
    """

    def __init__(self, backbone: ModuleFactory, heads: Mapping[str, nn.Module],
                 self_weight: float = 0.9, stitch_after: Sequence[int] | None = None) -> None:
        super().__init__(heads)
        (self_weight,) = check_numbers("cross-stitch", self_weight=self_weight)
        if stitch_after is not None:
            stitch_after = [check_count("cross-stitch: each stitch_after index", i, allow_zero=True)
                            for i in check_list("cross-stitch: stitch_after", stitch_after, "a list of child indices")]
        columns = [build(backbone, "backbone") for _ in self.task_names]
        if not isinstance(columns[0], nn.Sequential):
            raise ConfigError(
                f"cross-stitch needs a backbone factory returning nn.Sequential (its children are "
                f"the stages), got {type(columns[0]).__name__}"
            )
        ends = sorted(stitch_after) if stitch_after is not None else stage_ends(columns[0])
        if not ends or ends[0] < 0 or ends[-1] >= len(columns[0]):
            raise ConfigError(
                f"cross-stitch: stitch_after={list(ends)} must index children 0..{len(columns[0]) - 1}"
            )
        if ends[-1] != len(columns[0]) - 1:
            ends.append(len(columns[0]) - 1)
        starts = [0, *(e + 1 for e in ends[:-1])]
        self.stages = nn.ModuleList(
            nn.ModuleList(col[a:b + 1] for col in columns) for a, b in zip(starts, ends, strict=True)
        )
        k = len(columns)
        self.alphas = nn.ParameterList(
            nn.Parameter(stitch_init(k, self_weight)) for _ in self.stages
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hs = [x] * len(self.task_names)
        for stage, alpha in zip(self.stages, self.alphas, strict=True):
            stacked = torch.stack([col(h) for col, h in zip(stage, hs, strict=True)])
            mixed = torch.tensordot(alpha, stacked, dims=1)
            hs = list(mixed.unbind(0))
        return self.apply_heads(dict(zip(self.task_names, hs, strict=True)))

    def layerwise(self) -> StitchedColumns | None:
        """The stitched Jacobian (`StitchedColumns`) when every stage of every column is a plain
        Sequential the layerwise backward takes; else None."""
        if any(layerwise_parameters(column) is None for stage in self.stages for column in stage):
            return None
        return StitchedColumns(self.stages, list(self.alphas))

    def join(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """A task's column output (the stitched Jacobian gives each task its own)."""
        (features,) = outputs
        return features

    def task_output(self, task: str, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """`task`'s head on its column's last mixture."""
        return self.heads[task](features)

    def stitch_matrices(self) -> list[torch.Tensor]:
        """The k×k cross-stitch units, one per stage (rows: receiving task, columns: source)."""
        return [a.detach().clone() for a in self.alphas]
