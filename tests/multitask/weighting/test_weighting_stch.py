"""STCH: hand-worked totals and weights, the μ → 0 limit, the warm-up schedule, state, errors."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.core.errors import ConfigError, DataError, ShapeMismatchError
from lifelong.multitask.weighting import STCH, build_weighting
from lifelong.multitask.weighting.stch import smooth_tchebycheff


def _past_warmup(nadir: list[float], **kwargs: object) -> STCH:
    """An STCH whose single warm-up epoch measured `nadir` (warmup_epochs = 0)."""
    stch = STCH(len(nadir), warmup_epochs=0, **kwargs)
    stch.end_epoch(torch.tensor(nadir))
    assert not stch.warming_up
    return stch


def test_hand_values_after_warmup(total_and_grad) -> None:
    # L = (1, 2), n = (2, 1): f = log(L/n) = (−log 2, log 2); μ = 1, λ = (1, 1), k = 2.
    # total = 2 log(e^{−log 2} + e^{log 2}) = 2 log 2.5; softmax(f) = (0.5, 2)/2.5 = (0.2, 0.8);
    # ∂total/∂L_t = 2 · softmax_t / L_t = (0.4, 0.8).
    stch = _past_warmup([2.0, 1.0])
    total, grad = total_and_grad(stch, [1.0, 2.0])
    assert total == pytest.approx(2 * math.log(2.5), rel=1e-12)
    torch.testing.assert_close(grad, torch.tensor([0.4, 0.8], dtype=torch.float64))
    torch.testing.assert_close(stch.weights, torch.tensor([0.4, 0.8]))


def test_hand_values_with_mu_and_preference(total_and_grad) -> None:
    # μ = ½: total = 2 · ½ log(e^{−2 log 2} + e^{2 log 2}) = log 4.25, softmax = (1/17, 16/17),
    # weights = 2 · (1/17 / 1, 16/17 / 2) = (2/17, 16/17).
    stch = _past_warmup([2.0, 1.0], mu=0.5)
    total, grad = total_and_grad(stch, [1.0, 2.0])
    assert total == pytest.approx(math.log(4.25), rel=1e-12)
    torch.testing.assert_close(grad, torch.tensor([2 / 17, 16 / 17], dtype=torch.float64))
    # preference (1, 3) scales to sum k = 2: λ = (½, 3/2); λf = (−½ log 2, 3/2 log 2);
    # total = 2 log(2^{−½} + 2^{3/2}); softmax ∝ (2^{−½}, 2^{3/2}) = (0.2, 0.8); weights = 2λ·soft/L.
    stch = _past_warmup([2.0, 1.0], preference=[1.0, 3.0])
    total, grad = total_and_grad(stch, [1.0, 2.0])
    assert total == pytest.approx(2 * math.log(2**-0.5 + 2**1.5), rel=1e-12)
    torch.testing.assert_close(grad, torch.tensor([2 * 0.5 * 0.2 / 1, 2 * 1.5 * 0.8 / 2], dtype=torch.float64))
    torch.testing.assert_close(stch.weights, grad.float())


def test_small_mu_tends_to_the_weighted_max_and_stays_finite(total_and_grad) -> None:
    # k · max_t λ_t f_t = 2 · max(½ · (−log 2), 3/2 · log 2) = 3 log 2, and the gap is at most k μ log k.
    target = 3 * math.log(2)
    gaps = []
    for mu in (1.0, 0.3, 0.1, 1e-3, 1e-8):  # 1e-8: exp(λf/μ) alone would overflow
        total, grad = total_and_grad(_past_warmup([2.0, 1.0], mu=mu, preference=[1.0, 3.0]), [1.0, 2.0])
        assert math.isfinite(total) and torch.isfinite(grad).all()
        assert -1e-12 <= total - target <= 2 * mu * math.log(2) + 1e-12
        gaps.append(total - target)
    assert gaps[0] > gaps[1] > gaps[2] > 0 and max(abs(g) for g in gaps[3:]) < 1e-12
    # in the limit only the worst task is weighted: ∂/∂L_2 of 2 · (3/2) log(L_2/n_2) = 3/L_2
    torch.testing.assert_close(grad, torch.tensor([0.0, 1.5], dtype=torch.float64))


def test_smooth_tchebycheff_bounds() -> None:
    values = torch.tensor([0.3, -1.2, 0.9], dtype=torch.float64)
    pref = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    top = float((pref * values).max())  # 0.45
    for mu in (2.0, 0.5, 0.05):
        value = float(smooth_tchebycheff(values, mu, pref))
        assert top <= value <= top + mu * math.log(3)


def test_warmup_trains_on_log_losses_then_measures_the_nadir(total_and_grad) -> None:
    stch = STCH(2, warmup_epochs=1)
    for epoch_means in ([4.0, 4.0], [2.0, 1.0]):  # epochs 1 (warm-up) and 2 (nadir epoch)
        assert stch.warming_up
        total, grad = total_and_grad(stch, [1.0, 2.0])
        assert total == pytest.approx(math.log(2.0))  # log 1 + log 2
        torch.testing.assert_close(grad, torch.tensor([1.0, 0.5], dtype=torch.float64))  # 1/L_t
        stch.end_epoch(torch.tensor(epoch_means))
    assert not stch.warming_up
    torch.testing.assert_close(stch.nadir, torch.tensor([2.0, 1.0], dtype=torch.float64))
    total, _ = total_and_grad(stch, [1.0, 2.0])
    assert total == pytest.approx(2 * math.log(2.5))  # the hand value above
    stch.end_epoch(torch.tensor([9.0, 9.0]))  # later epochs leave the nadir alone
    torch.testing.assert_close(stch.nadir, torch.tensor([2.0, 1.0], dtype=torch.float64))


def test_defaults_follow_the_authors() -> None:
    stch = build_weighting("STCH", 3)
    assert (stch.mu, stch.warmup_epochs) == (1.0, 4)
    torch.testing.assert_close(stch.preference, torch.ones(3, dtype=torch.float64))
    for _ in range(5):  # four warm-up epochs and the nadir epoch
        assert stch.warming_up
        stch.end_epoch(torch.ones(3))
    assert not stch.warming_up


def test_state_dict_resumes_the_schedule_and_the_nadir(total_and_grad) -> None:
    stch = STCH(2, warmup_epochs=1)
    stch.end_epoch(torch.tensor([4.0, 4.0]))
    fresh, unrestored = STCH(2, warmup_epochs=1), STCH(2, warmup_epochs=1)
    fresh.load_state_dict(stch.state_dict())
    for w in (stch, fresh, unrestored):
        w.end_epoch(torch.tensor([2.0, 1.0]))
    total, grad = total_and_grad(fresh, [1.0, 2.0])
    want_total, want_grad = total_and_grad(stch, [1.0, 2.0])
    assert total == want_total and torch.equal(grad, want_grad)
    # negative control: without the saved epoch count the run is still in its warm-up
    assert unrestored.warming_up and total_and_grad(unrestored, [1.0, 2.0])[0] != want_total


def test_a_loss_at_zero_stays_finite(total_and_grad) -> None:
    total, grad = total_and_grad(_past_warmup([1.0, 1.0]), [0.0, 1.0])
    assert math.isfinite(total) and torch.isfinite(grad).all()


def test_errors() -> None:
    with pytest.raises(ConfigError, match=r"mu .* must be a finite number > 0"):
        STCH(2, mu=0.0)
    with pytest.raises(ConfigError, match="warmup_epochs must be an integer ≥ 0"):
        STCH(2, warmup_epochs=-1)
    with pytest.raises(ConfigError, match="preference must hold 2 positive weights"):
        STCH(2, preference=[1.0, 0.0])
    with pytest.raises(ConfigError, match="preference must be 2 finite numbers"):
        STCH(2, preference=[1.0, 1.0, 1.0])
    with pytest.raises(DataError, match="non-negative losses"):
        STCH(2).combine(torch.tensor([-0.5, 1.0]))
    with pytest.raises(ShapeMismatchError, match="expected 2 mean losses, got 3"):
        STCH(2).end_epoch(torch.ones(3))
    with pytest.raises(DataError, match="nadir must be positive and finite"):
        STCH(2, warmup_epochs=0).end_epoch(torch.tensor([0.0, 1.0]))
