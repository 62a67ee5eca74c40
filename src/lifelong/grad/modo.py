"""MoDo (Chen et al. 2023): MGDA's weights moved by one double-sampled projected step per update."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator
from lifelong.grad.simplex import project_simplex


def modo_weights(G12: Tensor, lam: Tensor, gamma: float = 1e-3, rho: float = 0.1) -> Tensor:
    """One MoDo weight step (Chen et al. 2023, Algorithm 1): λ ← Π_Δ(λ − γ (G₁₂ λ + ρ λ)).

    G₁₂ = J₁ J₂ᵀ (k × k, not symmetric) from two independent Jacobians, so G₁₂ λ is an unbiased
    estimate of J Jᵀ λ, the gradient of MGDA's subproblem ½‖Jᵀλ‖² (+ ½ρ‖λ‖², its regulariser).
    """
    return project_simplex(lam - gamma * (G12 @ lam + rho * lam))


@AGGREGATORS.register("modo", paper="Chen et al. 2023")
class MoDo(Aggregator):
    """MoDo: multi-objective gradient with double sampling ("Three-Way Trade-Off in Multi-Objective
    Learning: Optimization, Generalization and Conflict-Avoidance", Chen et al. 2023, NeurIPS).

    Takes the Jacobians of three disjoint parts of the batch (3 × k × p): λ takes one step with the
    first two (`modo_weights`), the update is J₃ᵀλ with the new λ and the third. λ starts uniform;
    γ = 1e-3 and ρ = 0.1 as in LibMTL (γ is not scale-free: it multiplies squared gradient norms).
    λ lives in `state_dict` and in `last_weights`.
    """

    samples = 3
    lazy = ("lam",)

    def __init__(self, gamma: float = 1e-3, rho: float = 0.1) -> None:
        super().__init__()
        gamma, rho = check_numbers("MoDo", gamma=gamma, rho=rho)
        if gamma < 0 or rho < 0:
            raise ConfigError(f"MoDo: need gamma >= 0 and rho >= 0, got gamma={gamma}, rho={rho}")
        self.gamma, self.rho = gamma, rho
        self.register_buffer("lam", torch.zeros(0, dtype=torch.float64))

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        k = J.shape[1]
        G12 = (J[0] @ J[1].T).to("cpu", torch.float64)
        lam = modo_weights(G12, self.lazy_state("lam", (k,), 1 / k).cpu(), self.gamma, self.rho)
        self.lam = lam.to(self.lam.device)
        self.last_weights = lam
        return lam.to(J) @ J[2]
