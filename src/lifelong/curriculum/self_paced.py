"""Self-paced learning (Kumar, Packer & Koller, 2010): the model picks its easy examples by their loss."""

from __future__ import annotations

from typing import Any

import torch

from lifelong.core.checks import check_positive
from lifelong.core.errors import ConfigError, DataError
from lifelong.curriculum.samplers import shuffled_prefix


def self_paced_selection(losses: torch.Tensor, lam: float) -> torch.Tensor:
    """v_i = [loss_i < λ], the closed-form minimiser over v ∈ {0,1}^N of Σ v_i·loss_i − λ·Σ v_i.

    Kumar et al. (2010) write λ = 1/K.
    """
    return losses < lam


class SelfPaced:
    """Alternating self-paced learning: select v by the closed form, train on it, then λ ← μ·λ.

    Defaults from Kumar et al. (2010): μ = 1.3, and the first λ set so that half the examples
    are selected (`start_fraction` = 0.5; it becomes that quantile of the first losses seen).
    Give `lam` to start from a fixed threshold instead.
    """

    def __init__(self, lam: float | None = None, mu: float = 1.3, start_fraction: float = 0.5) -> None:
        mu = check_positive("self-paced: mu", mu)
        start_fraction = check_positive("self-paced: start_fraction", start_fraction)
        lam = None if lam is None else check_positive("self-paced: lam", lam)
        if mu < 1.0 or not 0.0 < start_fraction <= 1.0 or (lam is not None and lam <= 0):
            raise ConfigError(f"SelfPaced: need mu >= 1 (got {mu}), start_fraction in (0, 1] (got "
                              f"{start_fraction}) and lam > 0 or None (got {lam})")
        self.lam0 = lam
        self.mu = mu
        self.start_fraction = start_fraction
        self.lam: float | None = lam

    def reset(self) -> None:
        """Start again from the initial λ (e.g. on new data)."""
        self.lam = self.lam0

    def select(self, losses: torch.Tensor) -> torch.Tensor:
        """The boolean selection v for the current λ (set from the losses on first use)."""
        if losses.ndim != 1 or losses.shape[0] == 0 or not bool(torch.isfinite(losses).all()):
            raise DataError(f"SelfPaced: losses must be a non-empty 1-D tensor of finite values; "
                            f"got shape {tuple(losses.shape)}")
        if self.lam is None:
            self.lam = float(torch.quantile(losses.double(), self.start_fraction))
        return self_paced_selection(losses, self.lam)

    def next_order(self, losses: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Indices of the selected examples in a random order; then λ grows by μ.

        When no loss is below λ, the single easiest example is used so that training continues.
        """
        selected = self.select(losses).nonzero().flatten()
        if selected.numel() == 0:
            selected = losses.argmin().reshape(1)
        self.lam *= self.mu
        return shuffled_prefix(selected, selected.numel(), generator)

    def state_dict(self) -> dict[str, Any]:
        """The current λ (None before the first selection)."""
        return {"lam": self.lam}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.lam = state["lam"]
