"""Diagnostics of multi-task training: gradient conflicts, task affinity grouping, negative transfer.

- `ConflictMonitor`: pairwise cosine of the tasks' shared-parameter gradients over training,
  the conflict ratio (share of records with cosine < 0) and a warning when a pair's cosine stays
  below a threshold (−0.1) for `patience` consecutive records.
- `lookahead_affinity` / `AffinityTracker` / `best_grouping`: task affinity grouping (Fifty et
  al., 2021): Z_{i→j} = 1 − L_j(θ after an SGD step on task i) / L_j(θ), averaged over
  training, and TAG's network selection: at most n groups of tasks (they may overlap) with the
  highest mean affinity onto each task from its best group (exact search).
- `delta_m` / `transfer_report`: each task's change against its single-task baseline and the
  average relative improvement Δm (Maninis et al., 2019).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any

import torch
from torch.func import functional_call

from lifelong.core.errors import ConfigError, DataError, IncompatibleError, ShapeMismatchError
from lifelong.grad import jacobian
from lifelong.models.layer_list import evaluating
from lifelong.multitask.architectures.base import MultiTaskModel

log = logging.getLogger("lifelong.multitask")


def cosine_matrix(jac: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of a (k, p) Jacobian (zero rows give 0)."""
    unit = jac / jac.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.T


class ConflictMonitor:
    """Running gradient-conflict statistics of k tasks, with a warning on persistent conflict.

    Each record holds the pairs of tasks present in it (all of them, unless a task sampler drew only
    some); a pair's statistics are over the records that held it (`pairs` counts them).
    """

    def __init__(self, tasks: Sequence[str], threshold: float = -0.1, patience: int = 10) -> None:
        self.tasks = tuple(tasks)
        k = len(self.tasks)
        self.threshold, self.patience = threshold, patience
        self.cos_sum = torch.zeros(k, k, dtype=torch.float64)
        self.conflicts = torch.zeros(k, k, dtype=torch.float64)
        self.pairs = torch.zeros(k, k, dtype=torch.float64)
        self.run = torch.zeros(k, k, dtype=torch.long)
        self.count = 0
        self.warnings: list[dict[str, Any]] = []

    def update(self, jac: torch.Tensor, step: int, present: torch.Tensor | None = None) -> torch.Tensor:
        """Record the cosines of one (k, p) Jacobian of shared-parameter gradients between the tasks
        `present` (k booleans; default all, the others' rows are ignored); returns them."""
        cos = cosine_matrix(jac.detach().double()).cpu()
        seen = torch.ones(len(self.tasks), dtype=torch.bool) if present is None else present.cpu()
        both = seen[:, None] & seen[None, :]
        self.cos_sum += cos * both
        self.conflicts += ((cos < 0) & both).double()
        self.pairs += both.double()
        self.count += 1
        below = cos < self.threshold
        self.run = torch.where(both, torch.where(below, self.run + 1, torch.zeros_like(self.run)), self.run)
        warned = {tuple(w["tasks"]) for w in self.warnings}
        k = len(self.tasks)
        for i, j in zip(*torch.triu_indices(k, k, 1).tolist(), strict=True):
            pair = (self.tasks[i], self.tasks[j])
            if int(self.run[i, j]) >= self.patience and pair not in warned:
                mean = float(self.cos_sum[i, j] / self.pairs[i, j])
                self.warnings.append({"tasks": list(pair), "step": step, "mean_cosine": mean})
                log.warning("tasks %r and %r: gradient cosine below %.2f for %d records (step "
                            "%d); consider separating them", *pair, self.threshold,
                            self.patience, step)
        return cos

    def summary(self) -> dict[str, Any]:
        """Mean cosine and conflict-ratio matrices (NaN for a pair no record held), the overall conflict
        ratio over the pairs recorded (None when none was) and the warnings."""
        k = len(self.tasks)
        iu = torch.triu_indices(k, k, 1)
        ratio = self.conflicts / self.pairs
        recorded = ratio[iu[0], iu[1]][self.pairs[iu[0], iu[1]] > 0]
        overall = float(recorded.mean()) if len(recorded) else None
        return {"tasks": list(self.tasks), "records": self.count, "pair_records": self.pairs.long().tolist(),
                "mean_cosine": (self.cos_sum / self.pairs).tolist(), "conflict_ratio": ratio.tolist(),
                "overall_conflict_ratio": overall, "warnings": list(self.warnings)}

    def state_dict(self) -> dict[str, Any]:
        return {"cos_sum": self.cos_sum, "conflicts": self.conflicts, "pairs": self.pairs, "run": self.run,
                "count": self.count, "warnings": self.warnings}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.cos_sum, self.conflicts, self.run = state["cos_sum"], state["conflicts"], state["run"]
        self.pairs = state["pairs"]
        self.count, self.warnings = int(state["count"]), list(state["warnings"])


def lookahead_affinity(model: MultiTaskModel, x: torch.Tensor,
                       task_losses: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
                       lr: float) -> torch.Tensor:
    """Z[i, j] = 1 − L_j(θ_s − lr·∇_{θ_s}L_i) / L_j(θ_s) on one batch `x` (Fifty et al., 2021).

    `task_losses(outputs)` maps the model's outputs on `x` to the losses (k,); only the shared
    parameters θ_s take the lookahead step. One forward per task, all in evaluation mode so that
    every loss comes from the same function (no fresh dropout masks) and the probe leaves
    BatchNorm's running statistics alone; the model's mode is restored after.
    """
    params = dict(model.named_parameters())
    shared_ids = {id(p) for p in model.shared_parameters()}
    names = [n for n, p in params.items() if id(p) in shared_ids]
    if not names:
        raise IncompatibleError(f"task affinity measures how a step on the shared parameters for one task changes "
                                f"the others' losses, but {type(model).__name__} shares no parameter; diagnose an "
                                "architecture that shares some (e.g. hps, mmoe, cross_stitch)")
    with evaluating(model):
        losses = task_losses(functional_call(model, params, (x,)))
        jac = jacobian(losses, [params[n] for n in names])
        rows = []
        with torch.no_grad():
            for g in jac:
                steps = g.split([params[n].numel() for n in names])
                moved = {**params, **{n: params[n] - lr * d.view_as(params[n])
                                      for n, d in zip(names, steps, strict=True)}}
                rows.append(task_losses(functional_call(model, moved, (x,))))
    return 1.0 - torch.stack(rows) / losses.detach().clamp_min(1e-12)


class AffinityTracker:
    """Average of lookahead affinity matrices over training."""

    def __init__(self, k: int) -> None:
        self.total = torch.zeros(k, k, dtype=torch.float64)
        self.count = 0

    def update(self, z: torch.Tensor) -> None:
        self.total += z.detach().double().cpu()
        self.count += 1

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total, self.count = state["total"], int(state["count"])

    def mean(self) -> torch.Tensor:
        """The averaged affinity matrix Z[i, j] = Z_{i→j}."""
        if self.count == 0:
            raise DataError("no affinity recorded yet; call update() during training first")
        return self.total / self.count


MAX_TASKS = 10  # the search scores every (block, group ⊇ block) pair of task subsets: 3^k of them


def members(k: int) -> torch.Tensor:
    """M[g, t] = 1 when task t is in the group whose members are the set bits of g (2^k × k)."""
    return (torch.arange(1 << k)[:, None] >> torch.arange(k)) & 1


def group_scores(z: torch.Tensor) -> torch.Tensor:
    """S[g, t] = mean_{j ∈ g, j ≠ t} Z_{j→t}: the affinity onto task t from its mates in the group
    whose members are the set bits of g (2^k × k); −inf where t ∉ g or g has fewer than 2 tasks."""
    return _onto(members(z.shape[0]), z)


def _onto(member: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """`group_scores` for the groups whose rows of 0/1 members are `member` (groups × k)."""
    size = member.sum(1, keepdim=True)
    zd = z.double()
    onto = (member.double() @ zd - zd.diagonal()) / (size - 1).clamp_min(1)
    return onto.masked_fill(~(member.bool() & (size >= 2)), float("-inf"))


def check_affinity(z: torch.Tensor) -> int:
    """The number of tasks k of an affinity matrix Z, checked to be a finite k × k tensor."""
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != z.shape[1]:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ShapeMismatchError(f"task grouping needs the affinity matrix Z (k × k), got {got}")
    if not bool(torch.isfinite(z).all()):
        raise DataError("task grouping: the affinity matrix holds NaN or infinite values; the losses it "
                        "was measured on were not finite")
    return z.shape[0]


def grouping_score(z: torch.Tensor, groups: Sequence[Sequence[int]]) -> float:
    """Mean over tasks of the affinity onto each task from its best group (Fifty et al., 2021,
    §3.3); a task must sit in at least one group of two or more tasks."""
    k = check_affinity(z)
    bad = [t for g in groups for t in g if isinstance(t, bool) or not isinstance(t, Integral) or not 0 <= t < k]
    if bad:
        raise ConfigError(f"grouping_score: task indices {bad} are not in 0..{k - 1}; name tasks by their "
                          "row in the affinity matrix")
    member = torch.zeros(len(groups), k, dtype=torch.long)
    for i, group in enumerate(groups):
        member[i, [int(t) for t in group]] = 1
    scores = _onto(member, z).amax(0) if groups else torch.full((k,), float("-inf"), dtype=torch.float64)
    alone = [t for t in range(k) if scores[t] == float("-inf")]
    if alone:
        raise ConfigError(f"grouping_score: tasks {alone} are in no group of two or more tasks; "
                          "put every task in a group with at least one other")
    return float(scores.mean())


def best_split(value: Sequence[float], k: int, n: int) -> list[int]:
    """The split of tasks 0..k-1 into at most n blocks (bitmasks) with the highest total
    `value[block]`: a dynamic programme over subsets, O(n · 3^k)."""
    full = (1 << k) - 1
    best = [0.0] + [float("-inf")] * full  # best[mask]: the highest total over ≤ m blocks of mask
    choice: list[list[int]] = []
    for _ in range(n):
        nxt, picked = [0.0] * (full + 1), [0] * (full + 1)
        for mask in range(1, full + 1):
            low = mask & -mask
            rest = sub = mask ^ low
            while True:  # every block holding the lowest task of `mask`
                block = sub | low
                total = value[block] + best[mask ^ block]
                if total > nxt[mask] or not picked[mask]:
                    nxt[mask], picked[mask] = total, block
                if sub == 0:
                    break
                sub = (sub - 1) & rest
        best = nxt
        choice.append(picked)
    blocks, mask = [], full
    for picked in reversed(choice):
        if mask:
            blocks.append(picked[mask])
            mask ^= picked[mask]
    return blocks


def best_grouping(z: torch.Tensor, n_groups: int) -> tuple[list[list[int]], float]:
    """At most `n_groups` groups of two or more tasks, possibly overlapping, with the highest
    `grouping_score`: TAG's network selection (Fifty et al., 2021, §3.3), solved exactly.

    Each task is served by one group, so the best selection is a split of the tasks into at most
    `n_groups` served blocks, each with its best group containing it (a dynamic programme over
    subsets); the selected groups are those best groups.
    """
    k = check_affinity(z)
    if k < 2:
        raise ConfigError(f"task grouping needs at least 2 tasks, got {k}")
    if not 1 <= n_groups <= k:
        raise ConfigError(f"n_groups={n_groups} must lie in [1, {k}] for {k} tasks")
    if k > MAX_TASKS:
        raise ConfigError(f"exhaustive grouping is limited to {MAX_TASKS} tasks, got {k}")
    scores, member, masks = group_scores(z), members(k), torch.arange(1 << k)
    # served[b, g]: the affinity the tasks of block b receive in group g, when b ⊆ g and |g| ≥ 2
    served = member.double() @ scores.nan_to_num(neginf=0.0).T
    usable = ((masks[:, None] & ~masks[None, :]) == 0) & (member.sum(1) >= 2)[None, :]
    block_value, block_group = (v.tolist() for v in served.masked_fill(~usable, float("-inf")).max(1))
    blocks = best_split(block_value, k, n_groups)
    chosen = sorted({block_group[b] for b in blocks})
    groups = sorted([t for t in range(k) if g >> t & 1] for g in chosen)
    return groups, grouping_score(z, groups)


def delta_m(mtl: Mapping[str, float], single: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float:
    """Δm = 100/T · Σ_t (−1)^{l_t} (M_mtl,t − M_single,t) / M_single,t, l_t = 1 if lower is better.

    Maninis et al., 2019; positive means the multi-task model beats the single-task baselines.
    """
    terms = [(1 if higher_is_better[t] else -1) * (mtl[t] - single[t]) / single[t] for t in single]
    return 100.0 * sum(terms) / len(terms)


def transfer_report(mtl: Mapping[str, float], single: Mapping[str, float],
                    higher_is_better: Mapping[str, bool]) -> dict[str, Any]:
    """Per-task multi-task vs single-task metric, signed relative change (%) and Δm."""
    tasks = {}
    for t in single:
        sign = 1 if higher_is_better[t] else -1
        change = 100.0 * sign * (mtl[t] - single[t]) / single[t]
        tasks[t] = {"multi_task": mtl[t], "single_task": single[t], "change_percent": change,
                    "negative_transfer": change < 0}
    return {"tasks": tasks, "delta_m": delta_m(mtl, single, higher_is_better)}
