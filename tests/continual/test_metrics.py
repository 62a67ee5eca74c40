import pytest

from lifelong.continual.metrics import (
    all_metrics,
    average_accuracy,
    backward_transfer,
    forgetting,
    forgetting_per_task,
    forward_transfer,
    learning_accuracy,
)
from lifelong.core.errors import ShapeMismatchError

# One 3-experience matrix worked by hand. Rows: untrained, after E1, after E2, after E3.
R = [
    [0.10, 0.20, 0.30],
    [0.90, 0.25, 0.35],
    [0.70, 0.80, 0.40],
    [0.60, 0.50, 0.95],
]


def test_reference_values_by_hand():
    # ACC = (0.60 + 0.50 + 0.95) / 3
    assert average_accuracy(R) == pytest.approx(2.05 / 3)
    # BWT = ((0.60 - 0.90) + (0.50 - 0.80)) / 2
    assert backward_transfer(R) == pytest.approx(-0.30)
    # FWT = ((R[1][1] - R[0][1]) + (R[2][2] - R[0][2])) / 2 = (0.05 + 0.10) / 2
    assert forward_transfer(R) == pytest.approx(0.075)
    # F_t = max over rows 1..T−1 minus the final row: (0.90 − 0.60, 0.80 − 0.50); F is their mean
    assert forgetting_per_task(R) == pytest.approx([0.30, 0.30])
    assert forgetting(R) == pytest.approx(0.30)
    assert forgetting_per_task([[0.2, 0.1], [0.9, 0.1], [0.4, 0.7]]) == pytest.approx([0.5])
    # LA = (0.90 + 0.80 + 0.95) / 3
    assert learning_accuracy(R) == pytest.approx(2.65 / 3)


def test_single_experience_has_no_transfer():
    assert forgetting_per_task([[0.1], [0.9]]) == []
    m = all_metrics([[0.1], [0.9]])
    assert m == {"acc": pytest.approx(0.9), "bwt": 0.0, "fwt": 0.0, "forgetting": 0.0,
                 "learning_accuracy": pytest.approx(0.9)}


def test_shape_checked():
    with pytest.raises(ShapeMismatchError, match="T\\+1 rows"):
        average_accuracy([[0.5, 0.5], [0.5, 0.5]])
