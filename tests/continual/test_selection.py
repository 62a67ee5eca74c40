"""Validation split carved from the training data, grid parsing and choice of the best point."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.continual.selection import (
    best_point,
    canonical_grid,
    check_grid_keys,
    grid_points,
    holdout,
    parse_grid,
    point_tag,
    strategy_of_key,
)
from lifelong.core.errors import ConfigError, EmptyExperienceError, UnknownNameError
from lifelong.data.scenarios import custom


def _stream(sizes=(40, 30, 25)):
    experiences = []
    for i, n in enumerate(sizes):
        x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3) + 1000 * i
        y = torch.full((n,), 2 * i) + torch.arange(n) % 2
        experiences.append(((x, y), (x[:5] + 0.5, y[:5])))  # test rows differ from every train row
    return custom(experiences, setting="class")


@settings(max_examples=25, deadline=None)
@given(fraction=st.floats(0.05, 0.9), seed=st.integers(0, 10_000))
def test_holdout_partitions_each_experience_training_data(fraction, seed):
    stream = _stream()
    val = holdout(stream, fraction, seed)
    for before, after in zip(stream, val, strict=True):
        n_val = round(before.n_train * fraction)
        assert after.test_y.shape[0] == n_val and after.n_train == before.n_train - n_val
        rows = torch.cat([after.train_x, after.test_x])
        # exactly the original training rows, each once; the real test set is gone
        assert torch.equal(rows[rows[:, 0].argsort()], before.train_x[before.train_x[:, 0].argsort()])
        assert not torch.isin(after.test_x[:, 0], before.test_x[:, 0]).any()
        assert torch.equal(after.test_y, before.train_y[(after.test_x[:, 0] - 1000 * before.id).long() // 3])
        assert after.classes == before.classes and after.task == before.task


def test_holdout_is_seeded():
    stream = _stream()
    a, b, c = holdout(stream, 0.25, 1), holdout(stream, 0.25, 1), holdout(stream, 0.25, 2)
    assert all(torch.equal(x.test_x, y.test_x) for x, y in zip(a, b, strict=True))
    assert any(not torch.equal(x.test_x, z.test_x) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_holdout_rejects_fractions_outside_0_1(fraction):
    with pytest.raises(ConfigError, match="between 0 and 1"):
        holdout(_stream(), fraction)


def test_holdout_refuses_experiences_too_small_to_split():
    with pytest.raises(EmptyExperienceError, match="experience 1 has 2 training samples"):
        holdout(_stream((40, 2)), 0.2)


def test_parse_grid_reads_yaml_scalars_and_bracketed_lists():
    grid = parse_grid(["ewc.ewc_lambda=1,10,0.5", "lr=0.01", "model_args.hidden=[32],[64,64]", "x.flag=true,false"])
    assert grid == {"ewc.ewc_lambda": [1, 10, 0.5], "lr": [0.01], "model_args.hidden": [[32], [64, 64]],
                    "x.flag": [True, False]}
    with pytest.raises(ConfigError, match="key=v1,v2"):
        parse_grid(["lr"])


def test_parse_grid_keeps_nested_lists_and_mappings_whole():
    assert parse_grid(["model_args.hidden=[[32,32],[64]]"]) == {"model_args.hidden": [[[32, 32], [64]]]}
    assert parse_grid(["model_args.hidden=[32, 32],[64]"]) == {"model_args.hidden": [[32, 32], [64]]}
    assert parse_grid(["benchmark_args={a: 1, b: [2, 3]},{a: 4}"]) == {
        "benchmark_args": [{"a": 1, "b": [2, 3]}, {"a": 4}]}


def test_parse_grid_refuses_bad_yaml_and_repeated_keys():
    with pytest.raises(ConfigError, match=r"grid entry 'lr=\[1'.*not a valid YAML value"):
        parse_grid(["lr=[1"])
    with pytest.raises(ConfigError, match="'lr' is given twice"):
        parse_grid(["lr=0.1", "ewc.ewc_lambda=1", "lr=0.01"])


def test_one_classifier_tells_run_settings_from_strategy_arguments():
    assert strategy_of_key("lr") is None and strategy_of_key("model_args.hidden") is None
    assert strategy_of_key("ewc.ewc_lambda") == "ewc" and strategy_of_key("er.buffer_size") == "replay"
    for key, option in [("seed", "--seeds"), ("out", "--out"), ("name", "--out"), ("strategy", "--strategies"),
                        ("strategy_args.ewc.ewc_lambda", "<strategy>.<argument>")]:
        with pytest.raises(ConfigError, match=f"compare sets .* itself for every run; use {option}"):
            strategy_of_key(key)
    with pytest.raises(ConfigError, match="names neither a run setting"):
        strategy_of_key("lambda")
    with pytest.raises(UnknownNameError, match="unknown strategy 'ewcc'"):
        strategy_of_key("ewcc.ewc_lambda")


def test_canonical_grid_renames_aliases_and_refuses_a_setting_twice_or_no_values():
    assert canonical_grid({"er.buffer_size": (10, 20), "lr": [0.1]}) == {"replay.buffer_size": [10, 20], "lr": [0.1]}
    with pytest.raises(ConfigError, match="'er.buffer_size' and 'replay.buffer_size' both set 'replay.buffer_size'"):
        canonical_grid({"er.buffer_size": [10], "replay.buffer_size": [20]})
    with pytest.raises(ConfigError, match="'lr' has no values"):
        canonical_grid({"lr": []})
    with pytest.raises(ConfigError, match="compare sets seed itself"):
        canonical_grid({"seed": [0, 1]})


def test_grid_points_take_shared_settings_and_own_arguments_only():
    grid = {"lr": [0.1, 0.01], "ewc.ewc_lambda": [1, 10], "replay.buffer_size": [50]}
    assert grid_points(["naive"], grid) == [{"lr": 0.1}, {"lr": 0.01}]
    points = grid_points(["ewc", "replay"], grid)
    assert len(points) == 4 and {"lr": 0.01, "ewc.ewc_lambda": 10, "replay.buffer_size": 50} in points
    assert grid_points(["naive"], {}) == [{}]
    check_grid_keys(grid, [["ewc"], ["replay"]])
    with pytest.raises(ConfigError, match=r"\['si.c'\]"):
        check_grid_keys({"si.c": [1]}, [["ewc"]])


def test_grid_keys_may_name_nested_run_settings():
    grid = {"model_args.hidden": [[16], [32]], "ewc.ewc_lambda": [1]}
    check_grid_keys(grid, [["naive"], ["ewc"]])
    assert grid_points(["naive"], grid) == [{"model_args.hidden": [16]}, {"model_args.hidden": [32]}]
    assert len(grid_points(["ewc"], grid)) == 2


def test_point_tag_and_best_point():
    assert point_tag({"ewc.ewc_lambda": 10, "lr": 0.01}) == "ewc_lambda=10,lr=0.01"
    assert point_tag({"model_args.hidden": [32, 32]}) == "hidden=_32,_32_"
    assert best_point([[0.5, 0.7], [0.8, 0.6], [0.7, 0.7]]) == 1
    assert best_point([[0.5], [0.5]]) == 0  # ties: the first
