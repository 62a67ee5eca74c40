"""Krum and Multi-Krum: selection by the squared distances to the nearest neighbours."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import AGGREGATORS
from lifelong.grad import Krum, gramian, krum_weights

# g1 = (0, 0), g2 = (1, 0), g3 = (0, 2), g4 = (1, 1) and an outlier g5 = (10, 10). Squared distances:
# d12 = 1, d13 = 4, d14 = 2, d15 = 200, d23 = 5, d24 = 1, d25 = 181, d34 = 2, d35 = 164, d45 = 162.
# With f = 1 each row is scored by its k − f − 2 = 2 nearest others:
# s1 = 1 + 2 = 3, s2 = 1 + 1 = 2, s3 = 2 + 4 = 6, s4 = 1 + 2 = 3, s5 = 162 + 164 = 326.
OUTLIER = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [10.0, 10.0]], dtype=torch.float64)


@pytest.mark.parametrize(("m", "expected"), [
    (1, [1.0, 0.0]),          # g2, the lowest score
    (2, [0.5, 0.0]),          # g2 and g1: s1 = s4 = 3, the lower index wins
    (3, [2 / 3, 1 / 3]),      # g2, g1, g4
    (4, [0.5, 0.75]),         # every row but the outlier (m = k − f)
])
def test_multi_krum_averages_the_best_scored_rows_and_never_the_outlier(m: int, expected: list) -> None:
    out = AGGREGATORS.build("Krum", n_byzantine=1, n_selected=m)(OUTLIER)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_the_outliers_size_does_not_matter() -> None:
    far = OUTLIER.clone()
    far[4] = 1e6
    for m in (1, 3):
        agg = Krum(n_byzantine=1, n_selected=m)
        torch.testing.assert_close(agg(far), agg(OUTLIER), rtol=0, atol=0)
    torch.testing.assert_close(krum_weights(gramian(far), 1, 3),
                               torch.tensor([1 / 3, 1 / 3, 0.0, 1 / 3, 0.0], dtype=torch.float64))


def test_ties_go_to_the_lower_index_so_krum_depends_on_the_task_order() -> None:
    # g = (1,0,0), (0,2,0), (0,0,3): d12 = 5, d13 = 10, d23 = 13; f = 0 scores by the nearest
    # other row: s = (5, 5, 10), a tie between g1 and g2 that the first of them wins.
    J = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(Krum()(J), J[0])
    torch.testing.assert_close(Krum()(J[[1, 0, 2]]), J[1])


def test_refuses_too_few_tasks_to_score() -> None:
    J = torch.eye(3, dtype=torch.float64)
    with pytest.raises(IncompatibleError, match=r"k >= f \+ 3 = 3 tasks; got k = 2 with n_byzantine f = 0"):
        Krum()(J[:2])
    with pytest.raises(IncompatibleError, match=r"k >= f \+ 3 = 4 tasks; got k = 3"):
        Krum(n_byzantine=1)(J)


def test_refuses_selecting_more_than_k_minus_f_rows() -> None:
    with pytest.raises(IncompatibleError, match=r"n_selected = 5 exceeds k - f = 4"):
        Krum(n_byzantine=1, n_selected=5)(OUTLIER)


@pytest.mark.parametrize("kwargs", [{"n_byzantine": -1}, {"n_selected": 0}])
def test_refuses_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=r"n_(byzantine|selected) must be (an integer ≥ 0|a positive integer)"):
        Krum(**kwargs)
