"""MoDo: hand-derived steps, weights on the simplex, convergence to MGDA, state round trips, errors."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.grad import MoDo, modo_weights

# J1 = I, J2 = [[1, 0], [−1, 1]], J3 = [[3, 1], [1, −1]]: G12 = J1 J2ᵀ = [[1, −1], [0, 1]] (not symmetric)
STACK = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [-1.0, 1.0]], [[3.0, 1.0], [1.0, -1.0]]],
                     dtype=torch.float64)
CONFLICT = torch.tensor([[2.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)  # G = [[5, −2], [−2, 2]]


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_first_and_second_steps_by_hand() -> None:
    # γ = ½, ρ = 0.1. Step 1: G12 λ0 + ρ λ0 = (0, ½) + (0.05, 0.05) = (0.05, 0.55);
    # λ0 − γ(·) = (0.475, 0.225), projected (+0.15 each) λ1 = (0.625, 0.375); d = λ1ᵀ J3 = (2.25, 0.25).
    # Step 2: G12 λ1 + ρ λ1 = (0.25, 0.375) + (0.0625, 0.0375); λ1 − γ(·) = (0.46875, 0.16875),
    # + 0.18125 each: λ2 = (0.65, 0.35); d = (2.3, 0.3).
    modo = MoDo(gamma=0.5)
    torch.testing.assert_close(modo(STACK), _t(2.25, 0.25))
    torch.testing.assert_close(modo.lam, _t(0.625, 0.375))
    torch.testing.assert_close(modo(STACK), _t(2.3, 0.3))
    torch.testing.assert_close(modo.last_weights, _t(0.65, 0.35))


def test_the_weights_use_the_first_jacobian_times_the_second_transposed() -> None:
    # Swapped, G21 = [[1, 0], [−1, 1]]: G21 λ0 + ρ λ0 = (0.55, 0.05), λ1 = (0.225, 0.475) + 0.15
    lam = modo_weights(STACK[1] @ STACK[0].T, _t(0.5, 0.5), gamma=0.5)
    torch.testing.assert_close(lam, _t(0.375, 0.625))
    torch.testing.assert_close(MoDo(gamma=0.5)(STACK[[1, 0, 2]]), 0.375 * STACK[2, 0] + 0.625 * STACK[2, 1])


def test_a_large_step_is_clipped_to_a_corner() -> None:
    # γ = 4: λ0 − 4 (0.05, 0.55) = (0.3, −1.7) projects to (1, 0); d = the first row of J3
    torch.testing.assert_close(MoDo(gamma=4.0)(STACK), STACK[2, 0])


@pytest.mark.parametrize(("rho", "first"), [(0.0, 4 / 11), (0.1, 4.1 / 11.2)])
def test_identical_samples_converge_to_the_regularised_min_norm_weights(rho: float, first: float) -> None:
    # With J1 = J2 = J the steps are projected gradient descent on ½ λᵀ(G + ρI)λ over the simplex;
    # for two tasks its minimiser is λ1 = (G22 + ρ − G12)/(G11 + G22 + 2ρ − 2 G12): 4/11 (MGDA's) at ρ = 0.
    # Along the simplex each step contracts the error by |1 − γ (11 + 2ρ)/2| ≤ 0.45 at γ = 0.1.
    modo = MoDo(gamma=0.1, rho=rho)
    for _ in range(100):
        d = modo(CONFLICT.expand(3, 2, 3))
    torch.testing.assert_close(modo.lam, _t(first, 1 - first), atol=1e-12, rtol=0)
    torch.testing.assert_close(d, first * CONFLICT[0] + (1 - first) * CONFLICT[1], atol=1e-12, rtol=0)


def test_state_dict_resumes_bit_exactly(resumes, sample_stacks) -> None:
    assert resumes(lambda: MoDo(gamma=0.05), sample_stacks)["lam"].shape == (4,)


def test_clear_errors() -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(3 samples, k tasks, p parameters\).*got \(2, 3\)"):
        MoDo()(CONFLICT)
    with pytest.raises(ShapeMismatchError, match=r"got \(2, 2, 3\).*3 disjoint parts"):
        MoDo()(CONFLICT.expand(2, 2, 3))
    modo = MoDo()
    modo(CONFLICT.expand(3, 2, 3))
    with pytest.raises(ShapeMismatchError, match=r"has shape \(2,\) but this Jacobian needs \(3,\)"):
        modo(torch.ones(3, 3, 3))
    with pytest.raises(ConfigError, match="gamma >= 0"):
        MoDo(gamma=-1.0)
