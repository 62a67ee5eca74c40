"""Runs grouped by strategy and summarised over seeds, checked against values worked by hand."""

from __future__ import annotations

import json

import pytest

from lifelong.core.errors import DataError
from lifelong.report.measures import (
    card_of,
    forgetting_curve,
    group_runs,
    load_run,
    manifest_groups,
    mean_matrix,
    mean_std,
    summarise,
    train_growth,
)

# Rows: untrained, after E1, E2, E3.
R = [[0.1, 0.1, 0.1],
     [0.9, 0.2, 0.1],
     [0.5, 0.8, 0.1],
     [0.4, 0.6, 0.7]]


def test_mean_std_uses_the_sample_deviation():
    assert mean_std([0.2, 0.4, 0.9]) == pytest.approx((0.5, 0.3605551275))
    assert mean_std([0.7]) == (0.7, 0.0)
    assert mean_std([0.7, None]) == (None, None) and mean_std([]) == (None, None)


def test_forgetting_curve_by_hand():
    # after E1: nothing to forget; after E2: E1 dropped 0.9 → 0.5; after E3: E1 0.9 → 0.4, E2 0.8 → 0.6
    assert forgetting_curve(R) == pytest.approx([0.0, 0.4, (0.5 + 0.2) / 2])


def test_mean_matrix_is_elementwise():
    other = [[v + 0.1 for v in row] for row in R]
    mean = mean_matrix([{"accuracy_matrix": R}, {"accuracy_matrix": other}])
    for got, row in zip(mean, R, strict=True):
        assert got == pytest.approx([v + 0.05 for v in row])


def test_train_growth_compares_later_experiences_with_earlier_ones():
    def runs(*seconds):
        return [{"timings": {"train_seconds": list(s)}} for s in seconds]

    assert train_growth(runs([1.0, 1.0, 2.0, 2.0])) == pytest.approx(2.0)
    assert train_growth(runs([1, 2, 3, 4, 5], [2, 2, 2, 2, 2])) == pytest.approx((4 / 1.5 + 1) / 2)
    assert train_growth(runs([3.0])) == 1.0


def _run(strategy, seed, **config):
    return {"name": f"{strategy}-s{seed}", "seed": seed,
            "config": {"strategy": strategy, "seed": seed, "name": f"{strategy}-s{seed}", "out": "x",
                       "lr": 0.001, **config}}


def test_runs_differing_only_by_seed_form_one_group():
    runs = [_run("naive", 0), _run("naive", 1), _run("ewc", 0), _run("ewc", 1, lr=0.1), _run("ewc", 0, lr=0.1)]
    groups = group_runs(runs)
    assert list(groups) == ["naive", "ewc", "ewc (lr=0.1)"]
    assert [len(g) for g in groups.values()] == [2, 1, 2]


def test_every_group_of_a_strategy_keeps_its_own_label():
    """Three learning rates of one strategy under one run name: three groups, none overwritten."""
    runs = [_run("naive", 0, lr=lr) for lr in (0.1, 0.01, 0.001)]
    for r in runs:
        r["name"] = r["config"]["name"] = "naive"
    groups = group_runs(runs)
    assert list(groups) == ["naive", "naive (lr=0.01)", "naive (lr=0.001)"]
    assert [g[0]["config"]["lr"] for g in groups.values()] == [0.1, 0.01, 0.001]


def test_load_run_refuses_an_unfinished_folder(tmp_path):
    with pytest.raises(DataError, match="not a finished run"):
        load_run(tmp_path)


def test_files_of_other_kinds_or_corrupt_ones_raise_data_errors(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 1, "name": "mt", "tasks": []}))
    with pytest.raises(DataError, match=r"not the results of a continual run: it lacks \['seed', 'config', 'metrics'"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text('{"metrics": ')
    with pytest.raises(DataError, match="is not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "compare.json").write_text(json.dumps({"experiments": []}))
    with pytest.raises(DataError, match=r"compare.json is not the compare.json of .*: it lacks \['base', 'runs'\]"):
        manifest_groups(tmp_path)


def test_card_of_a_combination_joins_its_parts():
    card = card_of("ewc+replay")
    assert card["family"] == "regularisation + replay" and card["memory_growth"] == "O(T)"
    assert card_of("no-such-strategy")["family"] == "unknown"


def test_a_group_card_comes_from_its_runs_strategy_not_its_label(compared):
    groups, _ = manifest_groups(compared)
    renamed = {f"group {i}": runs for i, runs in enumerate(groups.values())}
    assert [r["card"] for r in summarise(renamed)] == [card_of(label) for label in groups]
