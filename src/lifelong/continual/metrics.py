"""Continual-learning metrics as pure functions of the accuracy matrix R.

R has T+1 rows and T columns: row 0 is the untrained model, row i (1 ≤ i ≤ T) is measured after
training experience i, column j on experience j's test set (seed 37.6; Lopez-Paz & Ranzato 2017;
Chaudhry et al. 2018). In the formulas below indices are 1-based as in the papers: R_{i,j}.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lifelong.core.errors import ShapeMismatchError


def _as_matrix(R: torch.Tensor | Sequence[Sequence[float]]) -> torch.Tensor:
    R = torch.as_tensor(R, dtype=torch.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] + 1 or R.shape[1] < 1:
        raise ShapeMismatchError(
            f"an accuracy matrix has T+1 rows (row 0: untrained) and T ≥ 1 columns; got {tuple(R.shape)}"
        )
    return R


def average_accuracy(R) -> float:
    """ACC = (1/T) Σ_{t=1}^{T} R_{T,t}: mean final accuracy over all experiences."""
    R = _as_matrix(R)
    return float(R[-1].mean())


def backward_transfer(R) -> float:
    """BWT = 1/(T−1) Σ_{t=1}^{T−1} (R_{T,t} − R_{t,t}); negative means forgetting; 0 when T = 1."""
    R = _as_matrix(R)
    T = R.shape[1]
    if T < 2:
        return 0.0
    t = torch.arange(T - 1)
    return float((R[T, t] - R[t + 1, t]).mean())


def forward_transfer(R) -> float:
    """FWT = 1/(T−1) Σ_{t=2}^{T} (R_{t−1,t} − R_{0,t}): accuracy on t before training it, over untrained."""
    R = _as_matrix(R)
    T = R.shape[1]
    if T < 2:
        return 0.0
    t = torch.arange(1, T)
    return float((R[t, t] - R[0, t]).mean())


def forgetting_per_task(R) -> list[float]:
    """F_t = max_{i∈{1..T−1}} (R_{i,t} − R_{T,t}) for t = 1..T−1 (Chaudhry et al. 2018): how much
    of its best accuracy each experience but the last has lost by the end."""
    R = _as_matrix(R)
    T = R.shape[1]
    if T < 2:
        return []
    best = R[1:T, : T - 1].max(dim=0).values
    return (best - R[T, : T - 1]).tolist()


def forgetting(R) -> float:
    """F = 1/(T−1) Σ_{t=1}^{T−1} F_t, the mean of `forgetting_per_task`; 0 when T = 1."""
    per_task = forgetting_per_task(R)
    return sum(per_task) / len(per_task) if per_task else 0.0


def learning_accuracy(R) -> float:
    """LA = (1/T) Σ_{t=1}^{T} R_{t,t}: accuracy on each experience just after learning it (Riemer et al. 2019)."""
    R = _as_matrix(R)
    T = R.shape[1]
    t = torch.arange(T)
    return float(R[t + 1, t].mean())


def all_metrics(R) -> dict[str, float]:
    """Every metric of this module by its short name."""
    return {
        "acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R),
        "forgetting": forgetting(R),
        "learning_accuracy": learning_accuracy(R),
    }
