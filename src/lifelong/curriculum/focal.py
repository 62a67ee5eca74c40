"""Focal loss (Lin et al., 2017): cross-entropy down-weighting easy examples, a soft anti-curriculum."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lifelong.core.errors import ConfigError, LabelOutOfRangeError, ShapeMismatchError

REDUCTIONS = {"mean": torch.mean, "sum": torch.sum, "none": lambda v: v}


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: torch.Tensor | Sequence[float] | None = None,
               reduction: str = "mean") -> torch.Tensor:
    """FL(p_t) = −α_t·(1 − p_t)^γ·log p_t over softmax probabilities (Lin et al., 2017; γ = 2).

    `alpha` is an optional weight per class (the paper's α balances classes; its binary α = 0.25
    corresponds to `alpha=[0.75, 0.25]`). γ = 0 and no α give cross-entropy.
    """
    if logits.ndim != 2 or target.ndim != 1 or logits.shape[0] != target.shape[0]:
        raise ShapeMismatchError(f"focal_loss: logits {tuple(logits.shape)} and targets "
                                 f"{tuple(target.shape)} must be (N, C) and (N,)")
    if gamma < 0 or reduction not in REDUCTIONS:
        raise ConfigError(f"focal_loss: gamma={gamma} must be >= 0 and reduction={reduction!r} "
                          f"one of {sorted(REDUCTIONS)}")
    n_classes = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
        raise LabelOutOfRangeError(f"focal_loss: targets span [{int(target.min())}, "
                                   f"{int(target.max())}] but there are {n_classes} classes")
    log_pt = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    miss = (-torch.expm1(log_pt)).clamp_min(0.0)  # 1 − p_t
    # (1 − p_t)^γ for γ < 1 has an infinite derivative at p_t = 1, where the loss's is 0: take the
    # power away from 0 so that autograd never multiplies that infinity by the zero of log p_t
    hit = miss > 0
    loss = -torch.where(hit, torch.where(hit, miss, 1.0) ** gamma, 0.0) * log_pt
    if alpha is not None:
        alpha = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
        if alpha.shape != (n_classes,):
            raise ShapeMismatchError(f"focal_loss: alpha has shape {tuple(alpha.shape)}; give one "
                                     f"weight per class, shape ({n_classes},)")
        loss = alpha[target] * loss
    return REDUCTIONS[reduction](loss)
