"""Multi-task data sets: the MMoE synthetic tasks' correlation, Multi-Fashion's overlap, scenes,
multi-digits and validation."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import ConfigError, DataError, ShapeMismatchError
from lifelong.data.multitask import (
    TaskSpec,
    TaskSplit,
    load_benchmark,
    overlap_pairs,
    per_task,
    shared_inputs,
)


@pytest.mark.parametrize("p", [-0.3, 0.0, 0.5, 0.9])
def test_mmoe_synthetic_weight_vectors_have_cosine_p(p):
    """Without sines and noise y_i = w_iᵀx, so least squares recovers w_i; cos(w1, w2) = p."""
    data = load_benchmark("mmoe-synthetic", correlation=p, n_train=400, n_test=10, dim=20,
                          n_sines=0, noise=0.0, seed=3)
    x = data.splits["task1"].train_x.double()
    w = [torch.linalg.lstsq(x, data.splits[t].train_y.double()).solution[:, 0] for t in ("task1", "task2")]
    cos = torch.dot(w[0], w[1]) / (w[0].norm() * w[1].norm())
    assert abs(float(cos) - p) < 1e-6
    assert abs(float(w[0].norm()) - 1.0) < 1e-6  # scale c = 1


def test_mmoe_synthetic_is_seeded_and_shares_inputs():
    a = load_benchmark("mmoe-synthetic", n_train=50, n_test=10, seed=1)
    b = load_benchmark("mmoe-synthetic", n_train=50, n_test=10, seed=1)
    c = load_benchmark("mmoe-synthetic", n_train=50, n_test=10, seed=2)
    assert torch.equal(a.splits["task2"].train_y, b.splits["task2"].train_y)
    assert not torch.equal(a.splits["task2"].train_y, c.splits["task2"].train_y)
    assert a.shared and a.splits["task1"].train_x is a.splits["task2"].train_x
    with pytest.raises(DataError, match="correlation"):
        load_benchmark("mmoe-synthetic", correlation=1.5)


def test_overlap_puts_one_item_top_left_and_its_partner_bottom_right():
    items = torch.rand(6, 1, 28, 28)
    labels = torch.arange(6)
    x, left, right = overlap_pairs(items, labels, torch.Generator().manual_seed(0))
    partner = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 36, 36)
    assert torch.equal(left, labels) and torch.equal(right, labels[partner])
    assert torch.equal(x[:, :, :8, :28], items[:, :, :8, :])  # only the left item is there
    assert torch.equal(x[:, :, 28:, 8:], items[partner][:, :, 20:, :])  # only the right one
    overlap = torch.maximum(items[:, :, 8:, 8:], items[partner][:, :, :20, :20])
    assert torch.equal(x[:, :, 8:28, 8:28], overlap)


def test_multi_fashion_subsample(fashion):
    data = load_benchmark("multi-fashion", n_train=300, n_test=100, seed=0)
    assert data.input_shape == (1, 36, 36) and data.n_train("left") == 300
    for t in ("left", "right"):
        y = data.splits[t].train_y
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 9
    assert not torch.equal(data.splits["left"].train_y, data.splits["right"].train_y)
    assert float(data.splits["left"].train_x.max()) <= 1.0


def test_scenes_targets_agree_with_each_other():
    data = load_benchmark("scenes", n_train=200, n_test=20, size=16, seed=0)
    seg = data.splits["segment"].train_y
    depth = data.splits["depth"].train_y[:, 0]
    count = data.splits["count"].train_y
    assert set(seg.unique().tolist()) <= {0, 1, 2}
    assert bool((depth[seg == 0] == 1.0).all()) and bool((depth[seg > 0] < 1.0).all())
    assert bool((seg[count == 0] == 0).all())  # empty scenes are all background
    assert torch.equal((seg > 0).flatten(1).any(1), count > 0)
    # every object has its own random depth: the count is the number of depths the image shows,
    # so an object hidden behind nearer ones is not counted
    visible = [len(d[d < 1.0].unique()) for d in depth]
    assert visible == count.tolist() and max(visible) == 3
    x = data.splits["segment"].train_x
    assert x.shape == (200, 1, 16, 16)


def test_multi_digits_tasks_are_functions_of_the_digit():
    data = load_benchmark("multi-digits")
    d = data.splits["digit"].train_y
    assert torch.equal(data.splits["parity"].train_y, d % 2)
    assert torch.equal(data.splits["large"].train_y, (d >= 5).long())


def test_validation_errors_say_what_is_wrong():
    x = torch.zeros(4, 3)
    spec = TaskSpec("a", "ce", 2)
    with pytest.raises(ShapeMismatchError, match="same non-zero number"):
        shared_inputs("bad", (spec,), x, {"a": torch.zeros(3, dtype=torch.long)}, x,
                      {"a": torch.zeros(4, dtype=torch.long)})
    with pytest.raises(DataError, match="unique"):
        shared_inputs("dup", (spec, spec), x, {"a": torch.zeros(4)}, x, {"a": torch.zeros(4)})
    split = TaskSplit(x, torch.zeros(4), x, torch.zeros(4))
    other = TaskSplit(torch.zeros(4, 5), torch.zeros(4), torch.zeros(4, 5), torch.zeros(4))
    with pytest.raises(ShapeMismatchError, match="per-sample shape"):
        per_task("mixed", (spec, TaskSpec("b", "ce", 2)), {"a": split, "b": other})


def test_select_keeps_the_chosen_tasks():
    data = load_benchmark("multi-digits")
    one = data.select(["parity"])
    assert one.task_names == ("parity",) and one.shared
    with pytest.raises(DataError, match="no tasks"):
        data.select(["colour"])


def test_test_targets_must_have_the_train_targets_shape():
    """(N, 1) test labels against (N,) train labels broadcast in the accuracy (a reported accuracy of
    10.5); they are refused when the data set is built, naming the task and the shape to give."""
    x = torch.randn(10, 3)
    y = torch.zeros(10, dtype=torch.long)
    spec = TaskSpec("cls", "ce", 2)
    with pytest.raises(ShapeMismatchError, match=r"task 'cls': test targets have per-sample shape \(1,\) but "
                                                 r"train targets \(\); reshape the test targets to \(4,\)"):
        shared_inputs("bad", (spec,), x[:6], {"cls": y[:6]}, x[6:], {"cls": y[6:].unsqueeze(1)})
    split = TaskSplit(x[:6], y[:6].float().unsqueeze(1), x[6:], y[6:].float())
    with pytest.raises(ShapeMismatchError, match=r"task 'reg'.*reshape the test targets to \(4, 1\)"):
        per_task("bad", (TaskSpec("reg", "mse", 1),), {"reg": split})


def test_non_finite_inputs_are_refused_naming_the_task_split_and_rows():
    """A NaN test input used to give NaN metrics silently, and a NaN train input a non-finite loss
    that blamed the learning rate; both are refused when the data set is built."""
    x, y = torch.randn(10, 3), torch.zeros(10, dtype=torch.long)
    spec = TaskSpec("cls", "ce", 2)
    test_x = x[6:].clone()
    test_x[2, 1] = float("nan")
    with pytest.raises(DataError, match=r"task 'cls': 1 test input row\(s\) hold NaN or infinite values \(rows 2\); "
                                        r"drop or impute them"):
        shared_inputs("nan", (spec,), x[:6], {"cls": y[:6]}, test_x, {"cls": y[6:]})
    train_x = x.clone()
    train_x[[1, 4], 0] = float("inf")
    good = TaskSplit(x, y, x, y)
    with pytest.raises(DataError, match=r"task 'q': 2 train input row\(s\) .* \(rows 1, 4\)"):
        per_task("inf", (TaskSpec("p", "ce", 2), TaskSpec("q", "ce", 2)),
                 {"p": good, "q": TaskSplit(train_x, y, x, y)})
    ids = torch.randint(0, 5, (10, 4))
    assert shared_inputs("ids", (spec,), ids, {"cls": y}, ids, {"cls": y}).shared  # integer inputs pass
    huge = torch.full((10, 3), 3e38)  # finite, though their sum overflows
    assert shared_inputs("huge", (spec,), huge, {"cls": y}, huge, {"cls": y}).shared


@pytest.mark.parametrize(("name", "args", "why"), [
    ("mmoe-synthetic", {"n_train": -5}, "mmoe-synthetic: n_train must be a positive integer, got -5"),
    ("mmoe-synthetic", {"n_train": 0}, "mmoe-synthetic: n_train must be a positive integer, got 0"),
    ("mmoe-synthetic", {"n_test": -90}, "mmoe-synthetic: n_test must be a positive integer, got -90"),
    ("mmoe-synthetic", {"n_train": 2.5}, "mmoe-synthetic: n_train must be a positive integer, got 2.5"),
    ("mmoe-synthetic", {"dim": 1}, "mmoe-synthetic: dim must be ≥ 2"),
    ("mmoe-synthetic", {"n_sines": -1}, "mmoe-synthetic: n_sines must be an integer ≥ 0, got -1"),
    ("scenes", {"n_train": -5}, "scenes: n_train must be a positive integer, got -5"),
    ("scenes", {"n_test": 0}, "scenes: n_test must be a positive integer, got 0"),
    ("scenes", {"max_objects": 0}, "scenes: max_objects must be a positive integer, got 0"),
    ("multi-fashion", {"n_train": -5}, "multi-fashion: n_train must be a positive integer, got -5"),
])
def test_benchmark_sizes_must_be_positive_integers(name, args, why):
    """n_train=-5 used to slice from the end and give 10 training rows silently."""
    with pytest.raises(ConfigError, match=why):
        load_benchmark(name, **{"n_train": 20, "n_test": 10, **args})


def test_multi_fashion_refuses_more_rows_than_fashion_mnist_holds(fashion):
    """It used to give Fashion-MNIST's 10000 test images silently when asked for more."""
    with pytest.raises(ConfigError, match="n_test=10001 but Fashion-MNIST has 10000 images .* at most 10000"):
        load_benchmark("multi-fashion", n_train=10, n_test=10001)
