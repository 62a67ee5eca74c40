"""Runs grouped by strategy and summarised over seeds, checked against values worked by hand."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest

from lifelong.core.config import RunConfig
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


FOLDERS = itertools.count()


def _run(strategy, seed, **config):
    return {"name": f"{strategy}-s{seed}", "seed": seed, "folder": f"x/{strategy}-s{seed}-{next(FOLDERS)}",
            "config": {**RunConfig().to_dict(), "strategy": strategy, "seed": seed, "name": f"{strategy}-s{seed}",
                       "out": "x", **config}}


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


@pytest.mark.parametrize(("setting", "fields"), [
    ({"benchmark": "permuted-digits", "scenario": "domain"}, "benchmark, scenario"),
    ({"benchmark_args": {"n_experiences": 2}}, "benchmark_args"),
    ({"limit_train": 100}, "limit_train"),
    ({"model": "cnn"}, "model"),
    ({"model_args": {"hidden": [32]}}, "model_args"),
    ({"head": "multi"}, "head"),
])
def test_runs_of_other_benchmarks_limits_or_models_are_refused(setting, fields):
    runs = [_run("naive", 0), _run("naive", 1), _run("ewc", 0, **setting)]
    with pytest.raises(DataError, match=rf"the runs differ in {fields}, so their results are not comparable: "
                                        rf"{runs[0]['folder']} has .*; {runs[2]['folder']} has "):
        group_runs(runs)


def test_the_same_folder_twice_is_refused(tmp_path):
    runs = [_run("naive", 0), _run("naive", 1)]
    again = {**runs[0], "folder": f"{runs[1]['folder']}/../{runs[0]['folder'].split('/')[1]}"}
    with pytest.raises(DataError, match=rf"{again['folder']} is given twice \(also as {runs[0]['folder']}\)"):
        group_runs([*runs, again])


def test_the_same_configuration_and_seed_twice_is_refused():
    runs = [_run("naive", 0), _run("naive", 1), _run("naive", 0)]
    with pytest.raises(DataError, match=rf"{runs[0]['folder']} and {runs[2]['folder']} are both naive with seed 0"):
        group_runs(runs)
    assert list(group_runs(runs[:2] + [_run("naive", 0, lr=0.1)])) == ["naive", "naive (lr=0.1)"]


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


def _set(path, value):
    def change(results):
        *parents, leaf = path.split(".")
        node = results
        for part in parents:
            node = node[part]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return change


@pytest.mark.parametrize(("change", "message"), [
    (_set("metrics.acc", KeyError), "lacks the field 'metrics.acc'"),
    (_set("timings.total_seconds", KeyError), "lacks the field 'timings.total_seconds'"),
    (_set("config.strategy", KeyError), "lacks the field 'config.strategy'"),
    (_set("config", []), "lacks the field 'config.strategy'"),
    (_set("metrics.acc", "0.9"), "field 'metrics.acc' is '0.9', not a finite number"),
    (_set("metrics.bwt", float("nan")), "field 'metrics.bwt' is nan, not a finite number"),
    (_set("parameters", True), "field 'parameters' is True, not an integer"),
    (_set("timings.train_seconds", [1.0, None]), "field 'timings.train_seconds' is"),
    (_set("accuracy_matrix", []), r"'accuracy_matrix' must be T\+1 rows .*; its row lengths are \[\]"),
    (_set("accuracy_matrix", [[0.1, 0.2], [0.3, 0.4], [0.5]]), r"its row lengths are \[2, 2, 1\]"),
    (_set("accuracy_matrix", [[0.1, 0.2], [0.3, 0.4]]), r"its row lengths are \[2, 2\]"),
    (_set("accuracy_matrix", [[0.1], ["0.3"]]), "its row lengths are not lists of numbers"),
])
def test_load_run_names_the_missing_or_ill_typed_field(compared, tmp_path, change, message):
    run = tmp_path / "run"
    shutil.copytree(compared / "runs" / "naive-s0", run)
    results = json.loads((run / "results.json").read_text())
    change(results)
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match=message) as error:
        load_run(run)
    assert str(run / "results.json") in str(error.value)


def test_unreadable_results_or_measures_raise_data_errors(compared, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(compared / "runs" / "naive-s0", run)
    (run / "measures.json").write_text(json.dumps({"stored_bytes": "many"}))
    with pytest.raises(DataError, match="measures.json: field 'stored_bytes' is 'many', not a number"):
        load_run(run)
    (run / "measures.json").write_text("[]")
    with pytest.raises(DataError, match="measures.json is not the measures of a continual run: it holds a JSON list"):
        load_run(run)
    (run / "results.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"results.json cannot be read as JSON text \(UnicodeDecodeError"):
        load_run(run)
    (run / "results.json").unlink()
    (run / "results.json").mkdir()
    with pytest.raises(DataError, match=r"results.json cannot be read as JSON text \(IsADirectoryError"):
        load_run(run)
