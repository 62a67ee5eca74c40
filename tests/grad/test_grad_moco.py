"""MoCo: the tracked Jacobian, the projected weight steps, and the simplex projection they use."""

from __future__ import annotations

import numpy as np
import pytest
import quadprog
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.grad import MoCo, project_simplex

F64 = torch.float64
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)
# g1 = (3, 4, 0), g2 = (0, 0, 2) with losses (5, 4): rescaled to the losses' lengths the rows are
# Ĵ = (3, 4, 0), (0, 0, 4), orthogonal with Ĵ Ĵᵀ = diag(25, 16).
J = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], dtype=F64)
LOSSES = torch.tensor([5.0, 4.0], dtype=F64)


def _on_simplex(w: torch.Tensor) -> bool:
    return float(w.min()) >= 0 and abs(float(w.sum()) - 1) < 1e-12


def test_first_and_second_step_by_hand() -> None:
    agg = MoCo(eps=0.0)
    # step 1, β₁ = ½, γ₁ = 0.1: Y = ½ Ĵ, YYᵀ = diag(6.25, 4); λ − 0.1 YYᵀλ = (0.1875, 0.3), and Π
    # adds (1 − 0.4875)/2 to both: λ = (0.44375, 0.55625); d = Yᵀλ = (1.5 λ1, 2 λ1, 2 λ2)
    torch.testing.assert_close(agg(J, LOSSES), torch.tensor([0.665625, 0.8875, 1.1125], dtype=F64))
    torch.testing.assert_close(agg.lam, torch.tensor([0.44375, 0.55625], dtype=F64))
    # step 2, β₂ = ½/√2, γ₂ = 0.1/√2: Y = (½ + ½β₂) Ĵ = c Ĵ, c = 0.6767766953;
    # λ − γ₂ c² (25 λ1, 16 λ2) then Π: λ = (0.4082250945, 0.5917749055), d = c (3 λ1, 4 λ1, 4 λ2)
    torch.testing.assert_close(agg(J, LOSSES), torch.tensor([0.8288316912, 1.105108922, 1.60199786], dtype=F64))
    torch.testing.assert_close(agg.lam, torch.tensor([0.4082250945, 0.5917749055], dtype=F64))
    torch.testing.assert_close(agg.tracked, 0.6767766953 * J * torch.tensor([[1.0], [2.0]], dtype=F64))
    assert int(agg.step) == 2


def test_the_projection_can_zero_a_weight_which_a_softmax_never_does() -> None:
    # Ĵ = diag(10, 1), Y = diag(5, ½): λ − 0.1 (12.5, 0.125) = (−0.75, 0.4875) projects to (0, 1)
    agg = MoCo()
    out = agg(torch.tensor([[10.0, 0.0], [0.0, 1.0]], dtype=F64), torch.tensor([10.0, 1.0], dtype=F64))
    torch.testing.assert_close(agg.last_weights, torch.tensor([0.0, 1.0], dtype=F64))
    torch.testing.assert_close(out, torch.tensor([0.0, 0.5], dtype=F64))


def test_without_normalisation_it_tracks_the_raw_gradients() -> None:
    # Y = ½ J, YYᵀ = diag(6.25, 1): λ − 0.1 YYᵀλ = (0.1875, 0.45) → λ = (0.36875, 0.63125)
    # (the losses play no part: any positive values give the same update)
    expected = torch.tensor([0.553125, 0.7375, 0.63125], dtype=F64)
    for losses in (LOSSES, 7 * LOSSES):
        torch.testing.assert_close(MoCo(normalize=False)(J, losses), expected)


def test_normalised_rows_take_their_length_from_the_losses_alone() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = MoCo(), MoCo()
    for _ in range(3):
        Jt, losses = torch.randn(3, 4, generator=gen, dtype=F64), torch.rand(3, generator=gen, dtype=F64) + 0.1
        rescale = torch.tensor([[0.01], [1.0], [50.0]], dtype=F64)
        torch.testing.assert_close(a(rescale * Jt, losses), b(Jt, losses))


@PROPERTY
@given(data=st.data(), k=st.integers(1, 5), p=st.integers(1, 6))
def test_weights_stay_on_the_simplex(data: st.DataObject, k: int, p: int) -> None:
    agg = MoCo(normalize=data.draw(st.booleans()), gamma=data.draw(st.sampled_from([0.1, 1.0, 10.0])))
    for _ in range(4):
        Jt = torch.from_numpy(data.draw(arrays(np.int64, (k, p), elements=st.integers(-5, 5))).astype(np.float64))
        losses = torch.from_numpy(data.draw(arrays(np.float64, (k,), elements=st.floats(0.01, 10.0))))
        out = agg(Jt, losses)
        assert _on_simplex(agg.lam) and torch.isfinite(out).all()
        torch.testing.assert_close(out, agg.lam.to(F64) @ agg.tracked)


def test_state_dict_resumes_bit_exactly(resumes, loss_steps) -> None:
    assert resumes(MoCo, loss_steps)["lam"].shape == (3,)


def test_refuses_a_jacobian_of_another_shape_later() -> None:
    agg = MoCo()
    agg(J, LOSSES)
    with pytest.raises(ShapeMismatchError, match=r".tracked. has shape \(2, 3\) but this Jacobian needs \(3, 3\)"):
        agg(torch.ones(3, 3, dtype=F64), torch.ones(3, dtype=F64))


@pytest.mark.parametrize("kwargs", [{"beta": 0.0}, {"beta": 1.5}, {"gamma": -1.0}, {"rho": -0.1}])
def test_refuses_bad_hyperparameters(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="MoCo: need 0 < beta <= 1"):
        MoCo(**kwargs)


@pytest.mark.parametrize(("v", "expected"), [
    ([0.3, 0.7], [0.3, 0.7]),  # already on the simplex
    ([1.0, 1.0, 1.0], [1 / 3, 1 / 3, 1 / 3]),  # shift by −⅔
    ([-1.0, 0.5, 2.0], [0.0, 0.0, 1.0]),  # θ = 1: only the largest entry stays
    ([0.5, 0.0, 0.9], [0.3, 0.0, 0.7]),  # θ = 0.2 on the two largest, the third clipped
    ([5.0], [1.0]),
])
def test_project_simplex_by_hand(v: list[float], expected: list[float]) -> None:
    torch.testing.assert_close(project_simplex(torch.tensor(v, dtype=F64)), torch.tensor(expected, dtype=F64))


@PROPERTY
@given(V=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=st.floats(-10, 10)))
def test_project_simplex_is_the_nearest_point_of_the_simplex_row_by_row(V: np.ndarray) -> None:
    out = project_simplex(torch.from_numpy(V))
    for v, w in zip(V, out, strict=True):
        k = len(v)
        C = np.hstack([np.ones((k, 1)), np.eye(k)])  # Σw = 1 (equality), w ≥ 0
        oracle = quadprog.solve_qp(np.eye(k), v, C, np.r_[1.0, np.zeros(k)], meq=1)[0]
        assert _on_simplex(w)
        torch.testing.assert_close(w, torch.from_numpy(oracle), atol=1e-9, rtol=0)
