"""CR-MOGM: the exponential moving average of a Gramian aggregator's task weights."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import ConfigError, IncompatibleError, ShapeMismatchError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad import CRMOGM, mgda_weights

# g1 = (2, 1, 0), g2 = (−1, 0, 1): G = [[5, −2], [−2, 2]], MGDA's γ = 4/11, λ̂ = (4/11, 7/11).
CONFLICT = torch.tensor([[2.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
# G = diag(1, 4): MGDA's γ = 4/5, λ̂ = (0.8, 0.2).
ORTHO2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)


def test_two_steps_of_the_ema_with_mgda_by_hand() -> None:
    agg = AGGREGATORS.build("CR-MOGM")  # base mgda, α = 0.9
    # step 1: λ_1 = λ̂_1 = (4/11, 7/11), d = 4/11 g1 + 7/11 g2
    torch.testing.assert_close(agg(CONFLICT), torch.tensor([1 / 11, 4 / 11, 7 / 11], dtype=torch.float64))
    # step 2: λ_2 = 0.9 (4/11, 7/11) + 0.1 (0.8, 0.2) = (3.6/11 + 0.08, 6.3/11 + 0.02), d = (λ_1, 2 λ_2, 0)
    lam = torch.tensor([3.6 / 11 + 0.08, 6.3 / 11 + 0.02], dtype=torch.float64)
    torch.testing.assert_close(agg(ORTHO2), torch.stack([lam[0], 2 * lam[1], lam.new_zeros(())]))
    torch.testing.assert_close(agg.last_weights, lam)
    torch.testing.assert_close(agg.running, lam)


def test_alpha_zero_is_the_base_and_alpha_one_freezes_the_first_weights() -> None:
    free, frozen = CRMOGM(alpha=0.0), CRMOGM(alpha=1.0)
    for J in (CONFLICT, ORTHO2, CONFLICT):
        torch.testing.assert_close(free(J), AGGREGATORS.build("mgda")(J))
        torch.testing.assert_close(frozen(J), torch.tensor([4 / 11, 7 / 11], dtype=torch.float64) @ J)


def test_base_and_its_arguments() -> None:
    agg = CRMOGM(base="cagrad", base_args={"c": 0.0})  # c = 0: CAGrad is the mean
    torch.testing.assert_close(agg(CONFLICT), CONFLICT.mean(0))
    assert CRMOGM(base_args={"upper_bound": True}).on_representation  # MGDA-UB stays on the representation
    with pytest.raises(IncompatibleError, match=r"'graddrop' is not one\. Choose base among \[.*'mgda'"):
        CRMOGM(base="graddrop")
    with pytest.raises(ConfigError, match=r"unknown keys \['gamma'\]"):
        CRMOGM(base_args={"gamma": 1.0})
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]"):
        CRMOGM(alpha=1.5)


def test_refuses_another_number_of_tasks_once_running() -> None:
    agg = CRMOGM()
    agg(CONFLICT)
    with pytest.raises(ShapeMismatchError, match="running weights are for 2 tasks but the Jacobian has 3"):
        agg(torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize("base", ["mgda", "gradvac"])
def test_state_dict_resumes_bit_exactly_with_the_base_state(base: str, resumes) -> None:
    gen = torch.Generator().manual_seed(0)
    state = resumes(lambda: CRMOGM(base=base), [(torch.randn(3, 4, generator=gen, dtype=torch.float64),)
                                                for _ in range(5)])
    assert base != "gradvac" or state["base.targets"].shape == (3, 3)


def test_weights_stay_on_the_simplex_with_mgda() -> None:
    gen = torch.Generator().manual_seed(1)
    agg = CRMOGM()
    for step in range(5):
        J = torch.randn(4, 6, generator=gen, dtype=torch.float64)
        agg(J)
        w = agg.last_weights
        assert float(w.min()) >= 0 and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
        # λ_1 = λ̂_1; afterwards the average lags the weights of the current mini-batch
        assert torch.allclose(w, mgda_weights(J @ J.T)) == (step == 0)
