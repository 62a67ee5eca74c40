"""Smooth Tchebycheff scalarisation, STCH (Lin et al. 2024): a log-sum-exp smoothing of the worst task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.core.checks import check_count, check_positive, check_vector
from lifelong.core.errors import ConfigError, DataError, ShapeMismatchError
from lifelong.core.registries import WEIGHTINGS
from lifelong.multitask.weighting.base import LossWeighting

EPS = 1e-20  # keeps the log finite when a loss reaches 0, as in the authors' code


def smooth_tchebycheff(values: Tensor, mu: float, preference: Tensor) -> Tensor:
    """μ log Σ_t exp(λ_t v_t / μ) for v_t = f_t − z*_t (Lin et al. 2024), by a stable logsumexp.

    It lies in [max_t λ_t v_t, max_t λ_t v_t + μ log k], so it tends to the classical
    Tchebycheff max_t λ_t v_t as μ → 0; its gradient weights task t by λ_t softmax(λ v / μ)_t.
    """
    return mu * torch.logsumexp(preference.to(values) * values / mu, dim=0)


@WEIGHTINGS.register("stch", aliases=("STCH",), kind="loss", paper="Lin et al. 2024")
class STCH(LossWeighting):
    """Smooth Tchebycheff scalarisation of the log-losses ("Smooth Tchebycheff Scalarization for
    Multi-Objective Optimization", Lin et al. 2024), with the authors' multi-task recipe.

    Epochs 1…W (W = `warmup_epochs`, 4 as in the authors' code and LibMTL) train on Σ_t log L_t;
    epoch W + 1 still does, and its mean training loss per task (from `end_epoch`) becomes the
    nadir n; from epoch W + 2 on, L = k · μ log Σ_t exp(λ_t log(L_t / n_t) / μ), the ideal point
    being 0 in this normalised log space. μ = 1 (the authors' default). The preference λ
    (uniform by default) is scaled to sum to k, so uniform λ is the authors' code exactly; that
    is k² times the paper's STCH with λ on the simplex and smoothing μ/k, with the same minima.
    Reported weights are ∂L/∂L_t: 1/L_t in warm-up, then k λ_t softmax(λ f / μ)_t / L_t. The
    epoch count and the nadir are in `state_dict`. With a task sampler the sums and the
    log-sum-exp run over the drawn tasks alone.
    """

    def __init__(self, n_tasks: int, mu: float = 1.0, warmup_epochs: int = 4,
                 preference: Sequence[float] | None = None) -> None:
        super().__init__(n_tasks)
        mu = check_positive("stch: mu (the authors use 1.0)", mu, allow_zero=False)
        check_count("stch: warmup_epochs", warmup_epochs, allow_zero=True)
        pref = torch.ones(n_tasks, dtype=torch.float64) if preference is None else \
            check_vector("stch: preference", preference, n_tasks)
        if not (pref > 0).all():
            raise ConfigError(f"stch: preference must hold {n_tasks} positive weights, one per task, "
                              f"got {preference!r}")
        self.mu = mu
        self.warmup_epochs = warmup_epochs
        self.register_buffer("preference", n_tasks * pref / pref.sum(), persistent=False)
        self.register_buffer("nadir", torch.ones(n_tasks, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    @property
    def min_epochs(self) -> int:
        """The epochs a run needs for STCH's objective to train at all: W + 1 measure the nadir, then one."""
        return self.warmup_epochs + 2

    @property
    def warming_up(self) -> bool:
        """True until the nadir has been measured (the first W + 1 epochs)."""
        return bool(self.epochs_seen <= self.warmup_epochs)

    def weigh_present(self, losses: Tensor, present: Tensor, *, shared: Sequence[Tensor] | None,
                      step: int) -> tuple[Tensor, Tensor]:
        if (losses.detach() < 0).any():
            raise DataError(f"STCH works on log-losses and needs non-negative losses, got "
                            f"{losses.detach().tolist()}; use another weighting for these losses")
        weights = torch.zeros_like(losses.detach())
        if self.warming_up:
            weights[present] = 1 / (losses.detach()[present] + EPS)
            return (losses[present] + EPS).log().sum(), weights
        nadir, pref = self.nadir.to(losses)[present], self.preference.to(losses)[present]
        values = (losses[present] / nadir + EPS).log()
        total = self.n_tasks * smooth_tchebycheff(values, self.mu, pref)
        soft = torch.softmax(pref * values.detach() / self.mu, dim=0)
        weights[present] = self.n_tasks * pref * soft / (losses.detach()[present] + EPS * nadir)
        return total, weights

    def end_epoch(self, mean_losses: Tensor) -> None:
        """Count the epoch; at the end of epoch W + 1 its mean losses (k,) become the nadir."""
        mean = torch.as_tensor(mean_losses).detach().to(torch.float64).reshape(-1)
        if len(mean) != self.n_tasks:
            raise ShapeMismatchError(f"STCH.end_epoch: expected {self.n_tasks} mean losses, got "
                                     f"{len(mean)}")
        if self.epochs_seen == self.warmup_epochs:
            if not (torch.isfinite(mean).all() and (mean > 0).all()):
                raise DataError(f"STCH.end_epoch: the nadir must be positive and finite, got mean "
                                f"losses {mean.tolist()}; check the tasks' losses (NaN: a task sampler "
                                "never drew that task in the epoch, so raise train.steps_per_epoch)")
            self.nadir.copy_(mean)
        self.epochs_seen += 1
