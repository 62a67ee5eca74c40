"""GradDrop (Chen et al. 2020, Algorithm 1): one mask per feature, from the batch-summed sign(A)-weighted
task gradients, shared by every sample of the batch."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import DataError, IncompatibleError, ShapeMismatchError
from lifelong.grad import GradDrop

# Two samples, one feature, A = (+1, −1). Rows: each task's per-sample gradients ∂L_i/∂A_b.
SIGNS = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
# G = (1·1 + (−1)(−3), 2·1 + (−1)·1) = (4, 1): both positive, P = 1, everything is kept.
AGREE = torch.tensor([[1.0, -3.0], [2.0, 1.0]], dtype=torch.float64)
# G = (1 + 2, −2 + 1) = (3, −1): P = ½ (1 + 2/4) = 3/4. The positive sign keeps task 1 alone,
# (1, −2), even its negative entry; the negative sign keeps task 2 alone, (−2, −1).
SPLIT = torch.tensor([[1.0, -2.0], [-2.0, -1.0]], dtype=torch.float64)


def draws(aggregator: GradDrop, J: torch.Tensor, z: torch.Tensor, n: int) -> torch.Tensor:
    return torch.stack([aggregator(J, representation=z) for _ in range(n)])


def test_tasks_agreeing_on_the_batch_summed_sign_are_all_kept_on_every_draw() -> None:
    out = draws(GradDrop(generator=torch.Generator().manual_seed(0)), AGREE, SIGNS, 2000)
    torch.testing.assert_close(out, torch.tensor([3.0, -2.0], dtype=torch.float64).expand(2000, 2),
                               rtol=0, atol=0)


def test_the_positive_sign_is_kept_with_probability_purity() -> None:
    agg = GradDrop(generator=torch.Generator().manual_seed(0))
    out = draws(agg, SPLIT, SIGNS, 4000)
    positive = (out == torch.tensor([1.0, -2.0], dtype=torch.float64)).all(1)
    negative = (out == torch.tensor([-2.0, -1.0], dtype=torch.float64)).all(1)
    assert bool((positive | negative).all())
    assert float(positive.double().mean()) == pytest.approx(3 / 4, abs=0.03)  # ±4.4 std
    assert agg.last_weights.tolist() in ([1.0, 0.0], [0.0, 1.0])


def test_leak_keeps_that_fraction_of_the_dropped_tasks() -> None:
    # ℓ = ½: positive sign (1, −2) + ½ (−2, −1) = (0, −2.5); negative ½ (1, −2) + (−2, −1) = (−1.5, −2)
    out = draws(GradDrop(leak=0.5, generator=torch.Generator().manual_seed(1)), SPLIT, SIGNS, 400)
    outcomes = {tuple(row) for row in out.tolist()}
    assert outcomes == {(0.0, -2.5), (-1.5, -2.0)}


def test_full_leak_is_the_plain_sum() -> None:
    gen = torch.Generator().manual_seed(4)
    J, z = torch.randn(3, 4 * 5, generator=gen, dtype=torch.float64), torch.randn(4, 5, generator=gen)
    torch.testing.assert_close(GradDrop(leak=1.0)(J, representation=z), J.sum(0))
    torch.testing.assert_close(GradDrop(leak=1.0)(SPLIT, representation=SIGNS), SPLIT.sum(0))


def masks_by_feature(out: torch.Tensor, J: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(positive, negative, G): whether each feature's column of the update `out` (batch × features)
    is the sum of the tasks whose batch-summed signed gradient G_if = Σ_b J_ibf·sign(z_bf) is
    positive, or of those where it is negative, worked by hand."""
    G = torch.einsum("kbf,bf->kf", J, z.sign())
    on_positive = torch.einsum("kf,kbf->bf", (G > 0).double(), J)
    on_negative = torch.einsum("kf,kbf->bf", (G < 0).double(), J)
    positive = torch.isclose(out, on_positive, rtol=0, atol=1e-12).all(0)
    negative = torch.isclose(out, on_negative, rtol=0, atol=1e-12).all(0)
    return positive, negative, G


def test_the_mask_of_a_feature_is_shared_by_every_sample() -> None:
    # 3 tasks, 5 samples, 40 features: each feature's column of the update (5 samples) is the sum of
    # the tasks whose batch-summed signed gradient G_if has the drawn sign, for all samples at once.
    gen = torch.Generator().manual_seed(2)
    k, batch, features = 3, 5, 40
    J = torch.randn(k, batch, features, generator=gen, dtype=torch.float64)
    z = torch.randn(batch, features, generator=gen, dtype=torch.float64)
    agg = GradDrop(generator=torch.Generator().manual_seed(3))
    out = agg(J.reshape(k, -1), representation=z).reshape(batch, features)
    positive, negative, G = masks_by_feature(out, J, z)
    assert bool((positive ^ negative).all()) and bool(positive.any()) and bool(negative.any())
    kept = ((G > 0) & positive) | ((G < 0) & negative)
    torch.testing.assert_close(agg.last_weights, kept.double().mean(1))


def test_the_features_are_everything_after_the_batch_dimension() -> None:
    """A (2, 3, 4) representation: 12 features per sample, each masked as a whole column of the batch,
    and the same update as the representation flattened to (2, 12)."""
    gen = torch.Generator().manual_seed(6)
    J = torch.randn(2, 2 * 3 * 4, generator=gen, dtype=torch.float64)
    z = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    a, b = GradDrop(generator=torch.Generator().manual_seed(0)), GradDrop(generator=torch.Generator().manual_seed(0))
    out = a(J, representation=z)
    positive, negative, _ = masks_by_feature(out.reshape(2, 12), J.reshape(2, 2, 12), z.reshape(2, 12))
    assert bool((positive ^ negative).all()) and bool(positive.any()) and bool(negative.any())
    torch.testing.assert_close(out, b(J, representation=z.reshape(2, 12)), rtol=0, atol=0)


def test_it_refuses_a_jacobian_without_its_activations() -> None:
    with pytest.raises(IncompatibleError, match=r"GradDrop needs the activations .*\(on_representation"):
        GradDrop()(AGREE)
    with pytest.raises(ShapeMismatchError, match=r"as many entries as the Jacobian has columns \(2\), got \(3, 1\)"):
        GradDrop()(AGREE, representation=torch.ones(3, 1))
    with pytest.raises(DataError, match="non-finite"):
        GradDrop()(AGREE, representation=torch.tensor([[1.0], [float("nan")]]))
