"""TrimmedMean: coordinate-wise trimmed mean, checked against a slow per-coordinate reference."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad import TrimmedMean, trimmed_mean


def slow_trimmed_mean(J: torch.Tensor, b: int) -> torch.Tensor:
    """For each parameter: sort the k values in Python, drop b at each end, average the rest."""
    out = []
    for column in J.T.tolist():
        kept = sorted(column)[b:len(column) - b]
        out.append(sum(kept) / len(kept))
    return torch.tensor(out, dtype=J.dtype)


@pytest.mark.parametrize(("k", "b"), [(1, 0), (3, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 1)])
def test_matches_the_per_coordinate_reference(k: int, b: int) -> None:
    gen = torch.Generator().manual_seed(10 * k + b)
    J = torch.randn(k, 9, generator=gen, dtype=torch.float64)
    J[:, 0] = 1.0  # a column of ties
    torch.testing.assert_close(TrimmedMean(b)(J), slow_trimmed_mean(J, b), rtol=1e-12, atol=1e-12)


def test_hand_worked_values_and_the_fraction_of_entries_kept() -> None:
    # column 1 sorted: −7, 1, 2, 3, 100 → mean(1, 2, 3) = 2; column 2: −1, 0, 2, 3, 5 → mean(0, 2, 3) = 5/3.
    # Kept entries per row: (1 | 5 dropped), (2 | −1 dropped), (3, 0), (100 dropped | 2), (−7 dropped | 3).
    J = torch.tensor([[1.0, 5.0], [2.0, -1.0], [3.0, 0.0], [100.0, 2.0], [-7.0, 3.0]], dtype=torch.float64)
    agg = AGGREGATORS.build("TrimmedMean", trim_number=1)
    torch.testing.assert_close(agg(J), torch.tensor([2.0, 5 / 3], dtype=torch.float64))
    torch.testing.assert_close(agg.last_weights, torch.tensor([0.5, 0.5, 1.0, 0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("b", [1, 2])
def test_one_arbitrarily_large_row_changes_nothing_once_it_is_extreme(b: int) -> None:
    gen = torch.Generator().manual_seed(b)
    J = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    signs = torch.tensor([1.0, -1.0] * 4, dtype=torch.float64)
    outs = []
    for size in (1e3, 1e8, 1e300):
        J[2] = size * signs
        outs.append(trimmed_mean(J, b)[0])
    honest = J[[0, 1, 3, 4, 5]]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=0)
    assert (outs[0] >= honest.min(0).values).all() and (outs[0] <= honest.max(0).values).all()


def test_without_trimming_it_is_the_mean() -> None:
    J = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(TrimmedMean()(J), J.mean(0))


def test_refuses_too_few_tasks_and_negative_trim_numbers() -> None:
    with pytest.raises(IncompatibleError, match=r"needs k > 2b = 4 tasks; got k = 4"):
        TrimmedMean(2)(torch.ones(4, 3))
    with pytest.raises(ConfigError, match="trim_number must be an integer ≥ 0"):
        TrimmedMean(-1)
