import pytest
import torch

from lifelong.core.errors import (
    ConfigError,
    DataError,
    EmptyExperienceError,
    LabelOutOfRangeError,
    ShapeMismatchError,
    UnknownNameError,
)
from lifelong.data.scenarios import build_benchmark, custom, permuted, rotate, rotated, split
from lifelong.data.sources import load_source
from lifelong.data.stream import Experience, Stream


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


@pytest.mark.parametrize("setting", ["task", "domain", "class"])
def test_split_partitions_every_sample_once(digits, setting):
    stream = split(digits, setting)
    assert len(stream) == 5
    assert sum(e.n_train for e in stream) == len(digits.train_y)
    for i, e in enumerate(stream):
        assert set(e.train_y.tolist()) == set(e.classes)
        if setting == "domain":
            assert e.classes == (0, 1) and stream.n_classes == 2
        else:
            assert e.classes == (2 * i, 2 * i + 1) and stream.n_classes == 10


def test_split_class_order_seeded_and_fixed(digits):
    a, b = split(digits, seed=3), split(digits, seed=3)
    assert a.class_names == b.class_names != split(digits).class_names
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    s = split(digits, class_order=order)
    assert s.class_names[:2] == ("9", "8")
    # experience 0 holds the original digits 9 and 8, renumbered 0 and 1
    assert torch.equal(s[0].train_x, digits.train_x[(digits.train_y == 9) | (digits.train_y == 8)])
    with pytest.raises(ConfigError, match="permutation"):
        split(digits, class_order=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    with pytest.raises(ConfigError, match="divisors"):
        split(digits, n_experiences=3)


def test_split_into_unequal_groups(digits):
    """A first experience with more classes, then smaller ones (the "B50 Inc10" kind of protocol):
    [4, 2, 2, 2] on digits in the order 9..0."""
    s = split(digits, class_order=list(range(9, -1, -1)), classes_per_experience=[4, 2, 2, 2])
    assert [e.classes for e in s] == [(0, 1, 2, 3), (4, 5), (6, 7), (8, 9)]
    assert torch.equal(s[0].train_x, digits.train_x[digits.train_y >= 6])  # digits 9, 8, 7, 6
    assert torch.equal(s[0].train_y, 9 - digits.train_y[digits.train_y >= 6])
    assert sum(e.n_train for e in s) == len(digits.train_y) and s.n_classes == 10
    assert [e.classes for e in split(digits, classes_per_experience=5)] == [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)]
    for bad in ([4, 2, 2], [4, 2, 2, 3], [0, 10], "4,6"):
        with pytest.raises(ConfigError, match="classes_per_experience"):
            split(digits, classes_per_experience=bad)
    with pytest.raises(ConfigError, match="in n_experiences=3 experiences"):
        split(digits, n_experiences=3, classes_per_experience=[4, 2, 2, 2])
    with pytest.raises(ConfigError, match="its groups must be equal"):
        split(digits, "domain", classes_per_experience=[4, 2, 2, 2])


def test_permuted_keeps_labels_and_permutes_pixels(digits):
    stream = permuted(digits, "domain", n_experiences=3, seed=1)
    assert torch.equal(stream[0].train_x, digits.train_x)
    x1 = stream[1].train_x.flatten(1)
    assert not torch.equal(x1, digits.train_x.flatten(1))
    assert torch.equal(x1.sort(1).values, digits.train_x.flatten(1).sort(1).values)
    assert torch.equal(stream[2].train_y, digits.train_y)
    cls = permuted(digits, "class", n_experiences=3)
    assert cls.n_classes == 30 and cls[2].classes == tuple(range(20, 30))


def test_rotation_by_90_degrees_matches_rot90():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.allclose(rotate(x, 90), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(rotate(x, 0), x, atol=1e-6)


def test_rotated_angles(digits):
    stream = rotated(digits, n_experiences=4)
    assert torch.allclose(stream[0].train_x, digits.train_x, atol=1e-6)
    assert torch.allclose(stream[2].test_x, rotate(digits.test_x, 90), atol=1e-6)


def test_stream_slicing_and_moving_keep_type_without_validating_again(digits, monkeypatch):
    stream = split(digits, "task")
    monkeypatch.setattr("lifelong.data.stream.validate", lambda s: pytest.fail("a slice was validated again"))
    part = stream[1:3]
    assert isinstance(part, Stream) and [e.id for e in part] == [1, 2]
    assert (part.setting, part.n_classes, part.name, part.class_names) == (
        stream.setting, stream.n_classes, stream.name, stream.class_names)
    assert len(stream) == 5 and [e.id for e in stream[::2]] == [0, 2, 4]
    assert stream.class_mask()[1].tolist() == [False, False, True, True] + [False] * 6
    with pytest.raises(EmptyExperienceError, match="selects none of its 5 experiences"):
        stream[5:]
    moved = stream.to("cpu")  # moving does not validate again either
    assert [e.id for e in moved] == [e.id for e in stream] and moved.name == stream.name


def _exp(i, y_train, n=4, classes=None):
    return Experience(i, torch.zeros(len(y_train), 3), torch.tensor(y_train, dtype=torch.int64), torch.zeros(n, 3),
                      torch.zeros(n, dtype=torch.int64), classes or tuple(sorted({0, *y_train})), i)


def test_validation_names_the_experience():
    with pytest.raises(EmptyExperienceError, match="experience 1"):
        Stream((_exp(0, [0, 1]), _exp(1, [])), "class", 2)
    with pytest.raises(LabelOutOfRangeError, match=r"experience 0 .*\[0, 5\].*\[0, 1\]"):
        Stream((_exp(0, [0, 5]),), "class", 2)
    bad = Experience(0, torch.zeros(3, 3), torch.zeros(2, dtype=torch.int64), torch.zeros(1, 3),
                     torch.zeros(1, dtype=torch.int64), (0,), 0)
    with pytest.raises(ShapeMismatchError, match="experience 0"):
        Stream((bad,), "class", 2)


def test_validation_refuses_labels_outside_the_declared_classes():
    """An experience declaring classes (0, 1) but holding label 2 (in range for the stream) is refused,
    naming the experience, the stray labels and the declared classes, in its train and its test set."""
    Stream((_exp(0, [0, 1, 0], classes=(0, 1)),), "class", 3)  # every label declared: accepted
    with pytest.raises(LabelOutOfRangeError, match=r"experience 1 .*train labels \[2\] .*declared classes \(0, 1\)"):
        Stream((_exp(0, [0]), _exp(1, [1, 2, 1, 2], classes=(0, 1))), "task", 3)
    stray_test = Experience(0, torch.zeros(2, 3), torch.tensor([1, 2]), torch.zeros(3, 3), torch.tensor([0, 1, 2]),
                            (1, 2), 0)
    with pytest.raises(LabelOutOfRangeError, match=r"experience 0 .*test labels \[0\] .*declared classes \(1, 2\)"):
        Stream((stray_test,), "class", 3)


def test_labels_become_int64_and_small_integer_inputs_float32_exactly():
    """int32 labels and uint8 / bool inputs are converted as `custom()` does (losslessly); integer inputs
    wider than float32 can hold and non-integer labels are refused with what to do."""
    x = torch.tensor([[0, 255], [7, 128]], dtype=torch.uint8)
    e = Experience(0, x, torch.tensor([0, 1], dtype=torch.int32), x.bool(), torch.tensor([1, 0], dtype=torch.int16),
                   (0, 1), 0)
    Stream((e,), "class", 2)
    assert (e.train_x.dtype, e.test_x.dtype, e.train_y.dtype, e.test_y.dtype) == (
        torch.float32, torch.float32, torch.int64, torch.int64)
    assert e.train_x.tolist() == [[0.0, 255.0], [7.0, 128.0]] and e.test_x.tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert e.train_y.tolist() == [0, 1] and e.test_y.tolist() == [1, 0]
    floats = torch.randn(2, 2, dtype=torch.float64)  # any floating dtype is kept (a float64 model may want it)
    assert Experience(0, floats, e.train_y, floats, e.test_y, (0, 1), 0).train_x is floats
    wide = Experience(0, torch.tensor([[1, 2**30]]), torch.tensor([0]), torch.zeros(1, 2), torch.tensor([0]), (0,), 0)
    with pytest.raises(DataError, match=r"train inputs have dtype torch.int64; give floating-point inputs"):
        Stream((wide,), "class", 1)
    float_labels = Experience(0, torch.zeros(2, 2), torch.tensor([0.0, 1.0]), torch.zeros(2, 2), e.test_y, (0, 1), 0)
    with pytest.raises(DataError, match="train labels have dtype torch.float32; use integer labels"):
        Stream((float_labels,), "class", 2)


def test_custom_stream_from_tensors_and_datasets():
    ds = torch.utils.data.TensorDataset(torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]))
    stream = custom([((torch.randn(4, 2), torch.tensor([2, 3, 2, 3])), ds), (ds, ds)])
    assert stream.n_classes == 4 and stream[0].classes == (0, 1, 2, 3)
    assert stream[1].train_x.shape == (6, 2)


def test_benchmark_names():
    stream = build_benchmark("split-digits", "task", limit=(500, 200))
    assert stream.name == "split-digits" and sum(e.n_train for e in stream) == 500
    with pytest.raises(UnknownNameError, match="split"):
        build_benchmark("splt-digits")
    with pytest.raises(ConfigError, match="<builder>-<source>"):
        build_benchmark("digits")


@pytest.mark.parametrize(("name", "setting", "args", "why"), [
    ("split-digits", "class", {"n_experiences": "5"}, "split: n_experiences must be a positive integer"),
    ("split-digits", "class", {"seed": 1.5}, "split: seed must be an integer ≥ 0"),
    ("split-digits", "class", {"class_order": "0123456789"}, "split: class_order must be a list of numbers"),
    ("permuted-digits", "domain", {"n_experiences": None}, "permuted: n_experiences must be a positive integer"),
    ("permuted-digits", "domain", {"keep_first": "no"}, "permuted: keep_first must be true or false"),
    ("rotated-digits", "domain", {"angles": 30}, "rotated: angles must be a non-empty list of finite numbers"),
    ("rotated-digits", "domain", {"max_angle": "x"}, "rotated: max_angle must be a number"),
    ("split-digits", "class", {"limit": (100,)}, r"limit must be \(n_train, n_test\)"),
    ("split-digits", "class", {"limit": (-1, None)}, "limit: n_train must be a positive integer or None"),
])
def test_builder_arguments_of_the_wrong_type_are_named(name, setting, args, why):
    with pytest.raises(ConfigError, match=why):
        build_benchmark(name, setting, **args)
