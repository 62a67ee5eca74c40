"""SDMGrad: hand-derived inner steps, warm start, the regularised min-norm point, state round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest
import quadprog
import torch

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.grad import SDMGrad, sdmgrad_weights

# J1 = I, J2 = [[2, −1], [2, 2]], J3 = [[3, 1], [1, −1]]: G12 = J1 J2ᵀ = [[2, 2], [−1, 2]], whose
# GᵀG = [[5, 2], [2, 8]] has eigenvalues 9 and 4, so ‖G12‖₂ = 3 and the step (lr = 1) is 1/3.
STACK = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, -1.0], [2.0, 2.0]], [[3.0, 1.0], [1.0, -1.0]]],
                     dtype=torch.float64)
G12 = STACK[0] @ STACK[1].T


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_first_and_second_inner_steps_by_hand() -> None:
    # λ = ½, so w + λ/k = w + ¼. Step 1: G12 (¾, ¾) = (3, ¾), w0 − (1, ¼) = (−½, ¼) projects (sorted
    # (¼, −½), both kept, θ = −⅝) to w1 = (⅛, ⅞); effective weights (w1 + ¼)/1.5 = (¼, ¾),
    # d = ¼ (3, 1) + ¾ (1, −1) = (1.5, −0.5). Step 2: G12 (⅜, 9/8) = (3, 15/8), w1 − (1, ⅝) = (−⅞, ¼)
    # projects to w2 = (0, 1); effective (1/6, 5/6), d = (4/3, −2/3).
    sdm = SDMGrad(lamda=0.5, n_iter=1)
    torch.testing.assert_close(sdm(STACK), _t(1.5, -0.5))
    torch.testing.assert_close(sdm.w, _t(0.125, 0.875))
    torch.testing.assert_close(sdm.last_weights, _t(0.25, 0.75))
    torch.testing.assert_close(sdm(STACK), _t(4 / 3, -2 / 3))  # warm start: the second step
    torch.testing.assert_close(sdm.w, _t(0.0, 1.0))
    torch.testing.assert_close(SDMGrad(lamda=0.5, n_iter=2)(STACK), _t(4 / 3, -2 / 3))  # both in one call


def test_momentum_by_hand() -> None:
    # lr = ½ (step 1/6), λ = ½. Step 1: w0 − (3, ¾)/6 = (0, ⅜) → w1 = (5/16, 11/16). Step 2, gradient
    # G12 (w1 + ¼) = (3, 21/16); without momentum w1 − (½, 7/32) → (11/64, 53/64); with momentum ½ the
    # velocity is ½ (3, ¾) + (3, 21/16) = (4.5, 27/16), w1 − (¾, 9/32) → (5/64, 59/64).
    w0 = _t(0.5, 0.5)
    torch.testing.assert_close(sdmgrad_weights(G12, w0, 0.5, n_iter=1, lr=0.5), _t(5 / 16, 11 / 16))
    torch.testing.assert_close(sdmgrad_weights(G12, w0, 0.5, n_iter=2, lr=0.5), _t(11 / 64, 53 / 64))
    torch.testing.assert_close(sdmgrad_weights(G12, w0, 0.5, n_iter=2, lr=0.5, momentum=0.5), _t(5 / 64, 59 / 64))


def _regularised_min_norm(G: torch.Tensor, lam: float) -> float:
    """w1 of argmin_{w ∈ Δ} ½‖Jᵀ(w + λ/2)‖² for two tasks: with w + λ/2 = (1 + λ)(a, 1 − a), a ranges
    over [λ/2, 1 + λ/2]/(1 + λ) and the norm is MGDA's, minimal at a* = (G22 − G12)/(G11 + G22 − 2 G12)."""
    a = float((G[1, 1] - G[0, 1]) / (G[0, 0] + G[1, 1] - 2 * G[0, 1]))
    a = min(max(a, lam / 2 / (1 + lam)), (1 + lam / 2) / (1 + lam))
    return a * (1 + lam) - lam / 2


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 5.0])
@pytest.mark.parametrize("rows", [
    [[2.0, 1.0, 0.0], [-1.0, 0.0, 1.0]],  # a* = 4/11
    [[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]],  # a* = 0.9, clipped for λ > 0
    [[1.0, 1.0, 0.0], [-1.0, 2.0, 0.0]],  # a* = 0.8
    [[3.0, 0.0, 0.0], [1.0, 1.0, 0.0]],  # a* = −0.2, clipped to the lower end
])
def test_identical_samples_converge_to_the_regularised_min_norm_point(lam: float, rows: list) -> None:
    J = torch.tensor(rows, dtype=torch.float64)
    sdm = SDMGrad(lamda=lam, n_iter=300)
    d = sdm(J.expand(3, *J.shape))
    w1 = _regularised_min_norm(J @ J.T, lam)
    torch.testing.assert_close(sdm.w, _t(w1, 1 - w1), atol=1e-9, rtol=0)
    a = (w1 + lam / 2) / (1 + lam)
    torch.testing.assert_close(d, a * J[0] + (1 - a) * J[1], atol=1e-9, rtol=0)


def test_three_tasks_converge_to_the_qp_solution() -> None:
    # min ½ wᵀGw + (λ/k) 1ᵀG w over the simplex, by quadprog (min ½ xᵀGx − aᵀx, Cᵀx ≥ b, first equality)
    J = torch.tensor([[1.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    G, lam = (J @ J.T).numpy(), 0.3
    C = np.hstack([np.ones((3, 1)), np.eye(3)])
    expected = quadprog.solve_qp(G, -lam / 3 * G.sum(1), C, np.r_[1.0, np.zeros(3)], meq=1)[0]
    sdm = SDMGrad(lamda=lam, n_iter=3000)
    sdm(J.expand(3, 3, 3))
    torch.testing.assert_close(sdm.w, torch.from_numpy(expected), atol=1e-8, rtol=0)


def test_a_large_lambda_gives_the_mean_of_the_third_jacobian() -> None:
    torch.testing.assert_close(SDMGrad(lamda=1e9)(STACK), STACK[2].mean(0), atol=1e-8, rtol=0)


def test_zero_jacobians_leave_the_weights_and_give_zero() -> None:
    sdm = SDMGrad()
    assert torch.equal(sdm(torch.zeros(3, 2, 4)), torch.zeros(4))
    torch.testing.assert_close(sdm.w, _t(0.5, 0.5))


def test_state_dict_resumes_bit_exactly(resumes, sample_stacks) -> None:
    # few inner steps, so the warm start matters
    assert resumes(lambda: SDMGrad(n_iter=3), sample_stacks)["w"].shape == (4,)


def test_clear_errors() -> None:
    J = STACK[0]
    with pytest.raises(ShapeMismatchError, match=r"\(3 samples, k tasks, p parameters\).*got \(2, 2\)"):
        SDMGrad()(J)
    with pytest.raises(ShapeMismatchError, match=r"got \(4, 2, 2\).*3 disjoint parts"):
        SDMGrad()(J.expand(4, 2, 2))
    sdm = SDMGrad()
    sdm(STACK)
    with pytest.raises(ShapeMismatchError, match=r"has shape \(2,\) but this Jacobian needs \(3,\)"):
        sdm(torch.ones(3, 3, 2))
    with pytest.raises(ConfigError, match="n_iter must be a positive integer"):
        SDMGrad(n_iter=0)
    with pytest.raises(ConfigError, match="momentum < 1"):
        SDMGrad(momentum=1.0)
