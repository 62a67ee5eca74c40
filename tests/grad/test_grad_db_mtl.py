"""DB-MTL: log-loss gradients, their EMA, and the rescaling to the largest norm."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import ConfigError, ShapeMismatchError
from lifelong.grad import DBMTL

F64 = torch.float64
# g1 = (3, 4, 0), g2 = (0, 0, 2) with losses (5, 4): the log-loss gradients g/L are (0.6, 0.8, 0)
# and (0, 0, 0.5), of norms 1 and ½.
J = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], dtype=F64)
LOSSES = torch.tensor([5.0, 4.0], dtype=F64)


def test_libmtl_default_rate_is_constant() -> None:
    """σ = 0 (LibMTL's default): β_s = 0.9 at every step, so after s steps on the same J,
    ĝ = (1 − 0.9^s) g/L."""
    agg = DBMTL(eps=1e-300, beta_sigma=0)
    for s in range(1, 4):
        agg(J, LOSSES)
        torch.testing.assert_close(agg.ema, (1 - 0.9**s) * J / LOSSES[:, None])


def test_first_and_second_step_by_hand() -> None:
    agg = DBMTL(eps=1e-300)  # ε that leaves these values exact; σ = 0.5
    # step 1, β₁ = 0.9: ĝ = 0.1 g/L = (0.06, 0.08, 0), (0, 0, 0.05); norms 0.1, 0.05 → α = (1, 2)
    torch.testing.assert_close(agg(J, LOSSES), torch.tensor([0.06, 0.08, 0.1], dtype=F64))
    torch.testing.assert_close(agg.last_weights, torch.tensor([1.0, 2.0], dtype=F64))
    # step 2, β₂ = 0.9/√2: ĝ = (β₂ · 0.1 + 1 − β₂) g/L = (1 − 0.81/√2) g/L = 0.4272435072 g/L, α = (1, 2)
    c = 1 - 0.81 / 2**0.5
    torch.testing.assert_close(agg(J, LOSSES), c * torch.tensor([0.6, 0.8, 1.0], dtype=F64))
    torch.testing.assert_close(agg.ema, c * J / LOSSES[:, None])
    assert int(agg.step) == 2


def test_default_eps_moves_the_values_by_less_than_1e_7() -> None:
    # ε = 1e-8 in log(L + ε) and beside the norms: α₂ = 0.1/(0.05 + ε) moves d₃ by 2e-8
    out, exact = DBMTL()(J, LOSSES), torch.tensor([0.06, 0.08, 0.1], dtype=F64)
    torch.testing.assert_close(out, exact, rtol=0, atol=1e-7)
    assert not torch.equal(out, exact)


def test_every_task_contributes_as_much_as_the_largest() -> None:
    gen = torch.Generator().manual_seed(0)
    agg = DBMTL()
    for _ in range(3):
        agg(torch.randn(3, 5, generator=gen, dtype=F64), torch.rand(3, generator=gen, dtype=F64) + 0.1)
        norms = agg.ema.norm(dim=1)
        torch.testing.assert_close(agg.last_weights * norms, norms.max().expand(3))


def test_scaling_one_tasks_loss_changes_no_update() -> None:
    # L_1 → c L_1 scales its gradient too (g_1 → c g_1), so g_1/L_1, the EMA and every update are unchanged
    gen = torch.Generator().manual_seed(1)
    steps = [(torch.randn(3, 4, generator=gen, dtype=F64), torch.rand(3, generator=gen, dtype=F64) + 0.5)
             for _ in range(3)]
    scale = torch.tensor([1000.0, 1.0, 1.0], dtype=F64)
    plain, scaled, grad_only = DBMTL(), DBMTL(), DBMTL()
    for Jt, losses in steps:
        want = plain(Jt, losses)
        torch.testing.assert_close(scaled(scale[:, None] * Jt, scale * losses), want)
        # negative control: scaling the gradient alone does change the update
        assert not torch.allclose(grad_only(scale[:, None] * Jt, losses), want)


def test_state_dict_resumes_bit_exactly(resumes, loss_steps) -> None:
    assert int(resumes(DBMTL, loss_steps)["step"]) == 2


def test_refuses_a_jacobian_of_another_shape_later() -> None:
    agg = DBMTL()
    agg(J, LOSSES)
    with pytest.raises(ShapeMismatchError, match=r"\(2, 3\) but this Jacobian needs \(2, 4\); build a new"):
        agg(torch.ones(2, 4, dtype=F64), LOSSES)


@pytest.mark.parametrize("kwargs", [{"beta": 1.0}, {"beta": -0.1}, {"beta_sigma": -1.0}, {"eps": -1e-8}])
def test_refuses_bad_hyperparameters(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="DB-MTL: need 0 <= beta < 1"):
        DBMTL(**kwargs)
