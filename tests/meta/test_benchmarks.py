import math

import pytest
import torch

from lifelong.core.errors import ConfigError
from lifelong.data.sources import load_source
from lifelong.meta.fewshot import dihedral_classes, fewshot_from_source
from lifelong.meta.methods import BENCHMARKS
from lifelong.meta.sine import sine_benchmark


def _check_sine_points(x, y):
    """Targets are A sin(x + φ) with A in [0.1, 5], φ in [0, π], one slot per function."""
    slots = x[..., :-1]
    assert bool(((slots == 0) | (slots == 1)).all()) and bool((slots.sum(-1) == 1).all())
    xs = x[..., -1]
    assert float(xs.min()) >= -5 and float(xs.max()) <= 5
    # recover (A cos φ, A sin φ) by least squares on sin x, cos x for one function
    design = torch.stack([torch.sin(xs), torch.cos(xs)], -1).double()
    coef = torch.linalg.lstsq(design, y.double()).solution.flatten()
    amp = float(coef.norm())
    phase = math.atan2(float(coef[1]), float(coef[0]))
    assert 0.1 - 1e-5 <= amp <= 5 + 1e-5 and -1e-5 <= phase <= math.pi + 1e-5
    torch.testing.assert_close((design @ coef.unsqueeze(-1)).float(), y, rtol=1e-4, atol=1e-4)


def test_sine_benchmark_is_the_papers_stream_and_reproducible():
    bench = sine_benchmark(seed=3, n_functions=50, steps_per_function=2, points_per_step=4,
                           n_test_points=20, n_pretrain_episodes=2)
    assert bench.input_shape == (11,) and len(bench.tasks) == 10 and bench.online_batch == 4
    for slot, task in enumerate(bench.tasks):
        assert task.train_x.shape == (8, 11) and task.test_x.shape == (20, 11)
        assert bool((task.train_x[:, slot] == 1).all()) and bool((task.test_x[:, slot] == 1).all())
        _check_sine_points(torch.cat([task.train_x, task.test_x]),
                           torch.cat([task.train_y, task.test_y]))
    again = sine_benchmark(seed=3, n_functions=50, steps_per_function=2, points_per_step=4,
                           n_test_points=20, n_pretrain_episodes=2)
    assert torch.equal(again.tasks[4].test_y, bench.tasks[4].test_y)
    other = sine_benchmark(seed=4, n_functions=50, steps_per_function=2, points_per_step=4,
                           n_test_points=20, n_pretrain_episodes=2)
    assert not torch.equal(other.tasks[4].test_y, bench.tasks[4].test_y)


def test_sine_configuration_errors_name_the_argument():
    with pytest.raises(ConfigError, match="sine_benchmark: points_per_step must be a positive integer, got 0"):
        sine_benchmark(points_per_step=0)
    with pytest.raises(ConfigError, match="n_functions=5 is below n_slots=10"):
        sine_benchmark(n_functions=5)
    with pytest.raises(ConfigError, match="sine_benchmark: online_lr"):
        sine_benchmark(online_lr=0)


def test_sine_episodes_are_ten_functions_learned_in_slot_order():
    bench = sine_benchmark(seed=0, n_functions=40, steps_per_function=3, points_per_step=2,
                           remember_per_function=5, n_pretrain_episodes=2)
    ep = bench.sample(torch.Generator().manual_seed(1), 4)
    assert ep.traj_x.shape == (4, 30, 2, 11) and ep.traj_y.shape == (4, 30, 2, 1)
    assert ep.remember_x.shape == (4, 50, 11) and ep.keep.shape == (4, 1)
    # steps 0-2 are slot 0, steps 3-5 slot 1, ...: functions arrive one after another
    slot_of_step = ep.traj_x[..., :10].argmax(-1)
    assert torch.equal(slot_of_step, torch.arange(10).repeat_interleave(3).view(1, 30, 1)
                       .expand(4, 30, 2))
    for s in range(10):  # each slot's trajectory and remember points share one sine function
        rows = ep.traj_x[0].flatten(0, 1)[:, s] == 1
        rem = ep.remember_x[0][:, s] == 1
        _check_sine_points(torch.cat([ep.traj_x[0].flatten(0, 1)[rows], ep.remember_x[0][rem]]),
                           torch.cat([ep.traj_y[0].flatten(0, 1)[rows], ep.remember_y[0][rem]]))


def test_dihedral_variants_are_new_classes():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    views, labels = dihedral_classes(x, torch.tensor([1]), 3, 8)
    assert labels.tolist() == [1, 4, 7, 10, 13, 16, 19, 22]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8  # the 8 symmetries differ


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def test_fewshot_splits_classes_and_relabels_the_meta_test_stream(digits):
    bench = fewshot_from_source(digits, shots=4, class_variants=2)
    assert bench.n_outputs == 10 and bench.reset_head and len(bench.tasks) == 5
    assert set(bench.pretrain_y.tolist()) == set(range(10))  # 5 classes x 2 variants
    def key(x):
        return tuple(x.flatten().tolist())

    meta_images = {key(x) for x in bench.pretrain_x}
    digit_of = {key(x): int(c) for x, c in zip(digits.train_x, digits.train_y, strict=True)}
    for i, task in enumerate(bench.tasks):
        assert task.train_x.shape == (4, 1, 8, 8) and task.train_y.tolist() == [i] * 4
        assert bool((task.test_y == i).all())
        assert len(task.test_y) == int((digits.test_y == 5 + i).sum())
        # meta-test images are digit 5 + i and never appear in meta-training
        assert {digit_of[key(x)] for x in task.train_x} == {5 + i}
        assert not meta_images & {key(x) for x in task.train_x}


def test_fewshot_episodes_reset_the_rows_of_the_classes_they_introduce(digits):
    bench = fewshot_from_source(digits, classes_per_trajectory=3, trajectory_shots=4,
                                remember=7, class_variants=1)
    ep = bench.sample(torch.Generator().manual_seed(0), 5)
    assert ep.traj_x.shape == (5, 12, 1, 1, 8, 8) and ep.remember_x.shape == (5, 7, 1, 8, 8)
    for e in range(5):
        classes = ep.traj_y[e, :, 0].view(3, 4)
        assert bool((classes == classes[:, :1]).all())  # 4 shots of one class, then the next
        assert len(set(classes[:, 0].tolist())) == 3 and int(classes.max()) < 5
        expected = torch.ones(5)
        expected[classes[:, 0]] = 0
        assert torch.equal(ep.keep[e], expected)
        assert int(ep.remember_y[e].max()) < 5


def test_fewshot_configuration_errors(digits):
    with pytest.raises(ConfigError, match="meta_train_classes=10"):
        fewshot_from_source(digits, meta_train_classes=10)
    with pytest.raises(ConfigError, match="shots=500"):
        fewshot_from_source(digits, shots=500)
    with pytest.raises(ConfigError, match="classes_per_trajectory=50"):
        fewshot_from_source(digits, classes_per_trajectory=50, class_variants=1)
    with pytest.raises(ConfigError, match="fewshot: remember must be a positive integer, got 'x'"):
        fewshot_from_source(digits, remember="x")


def test_benchmarks_are_registered_with_their_kind():
    assert BENCHMARKS.names() == ["fewshot-digits", "fewshot-fashion-mnist", "sine"]
    assert BENCHMARKS.meta("incremental-sine")["kind"] == "regression"
    with pytest.raises(ConfigError, match="unknown keys \\['bogus'\\]"):
        BENCHMARKS.build("fewshot-digits", bogus=1)


def test_fewshot_fashion_mnist_keeps_few_samples_per_class(fashion):
    bench = fewshot_from_source(fashion, class_variants=2, max_per_class=30, shots=3)
    assert bench.name == "fewshot-fashion-mnist" and bench.input_shape == (1, 28, 28)
    assert bench.pretrain_x.shape == (5 * 2 * 30, 1, 28, 28)
    assert torch.equal(torch.bincount(bench.pretrain_y), torch.full((10,), 30))
    assert [len(t.test_y) for t in bench.tasks] == [1000] * 5
    assert all(t.train_x.shape == (3, 1, 28, 28) for t in bench.tasks)
