"""MoCo (Fernando et al. 2023): MGDA on a tracked Jacobian, with weights moved by projected steps."""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.core.checks import check_flag, check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad.base import Aggregator, gramian
from lifelong.grad.simplex import project_simplex


def moco_step(J: Tensor, tracked: Tensor, lam: Tensor, beta: float, gamma: float,
              rho: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """One MoCo step (Fernando et al. 2023, Algorithm 1): (update, updated Y, updated λ).

    Y ← Y − β (Y − J) tracks the Jacobian, λ ← Π_Δ(λ − γ (Y Yᵀ + ρ I) λ) is one projected gradient
    step on ½‖Yᵀλ‖² + ½ρ‖λ‖² over the simplex Δ (λ float64, Y Yᵀ formed in float64), update = Yᵀλ.
    """
    tracked = tracked - beta * (tracked - J)
    G = gramian(tracked)
    lam = project_simplex(lam - gamma * (G + rho * torch.eye(len(G), dtype=G.dtype)) @ lam)
    return lam.to(tracked) @ tracked, tracked, lam


@AGGREGATORS.register("moco", paper="Fernando et al. 2023")
class MoCo(Aggregator):
    """MoCo: stochastic multi-objective gradient with correction ("Mitigating Gradient Bias in
    Multi-objective Learning: A Provably Convergent Approach", Fernando et al. 2023, ICLR).

    At step s = 1, 2, …: β_s = β / s^σ_β and γ_s = γ / s^σ_γ; Y starts at 0 and λ uniform. Defaults
    β = 0.5, σ_β = 0.5, γ = 0.1, σ_γ = 0.5, ρ = 0 as in LibMTL. λ is projected onto the simplex as
    in the paper (LibMTL and the authors' NYUv2 script apply a softmax instead). `normalize=True`
    first rescales each task gradient to the length of its loss, g_t L_t / (‖g_t‖ + ε) with
    ε = 1e-8, as the authors' NYUv2 experiments and LibMTL do (hence `needs_losses`);
    `normalize=False` tracks the raw gradients, the paper's Algorithm 1. `last_weights` holds λ
    (the weights on the tracked gradients). Y (k × p), λ and the step count live in `state_dict`.
    """

    needs_losses = True
    lazy = ("tracked", "lam")

    def __init__(self, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1,
                 gamma_sigma: float = 0.5, rho: float = 0.0, normalize: bool = True,
                 eps: float = 1e-8) -> None:
        super().__init__()
        beta, beta_sigma, gamma, gamma_sigma, rho, eps = check_numbers(
            "MoCo", beta=beta, beta_sigma=beta_sigma, gamma=gamma, gamma_sigma=gamma_sigma, rho=rho, eps=eps)
        if not 0 < beta <= 1 or gamma < 0 or rho < 0 or beta_sigma < 0 or gamma_sigma < 0 or eps < 0:
            raise ConfigError(f"MoCo: need 0 < beta <= 1 and gamma, rho, the decay rates and eps >= 0, got "
                              f"beta={beta}, gamma={gamma}, rho={rho}, beta_sigma={beta_sigma}, "
                              f"gamma_sigma={gamma_sigma}, eps={eps}")
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma = beta, beta_sigma, gamma, gamma_sigma
        self.rho, self.normalize, self.eps = rho, check_flag("MoCo: normalize", normalize), eps
        self.register_buffer("tracked", torch.zeros(0, 0))
        self.register_buffer("lam", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def aggregate(self, J: Tensor, losses: Tensor | None = None) -> Tensor:
        tracked, lam = self.lazy_state("tracked", tuple(J.shape)), self.lazy_state("lam", (len(J),), 1 / len(J))
        if self.normalize:
            J = J * (losses.to(J) / (J.norm(dim=1) + self.eps))[:, None]
        self.step += 1
        s = int(self.step)
        update, self.tracked, lam = moco_step(J, tracked.to(J), lam.cpu(), self.beta / s**self.beta_sigma,
                                              self.gamma / s**self.gamma_sigma, self.rho)
        self.lam = lam.to(self.lam.device)
        self.last_weights = lam
        return update
