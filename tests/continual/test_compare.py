"""`compare`: strategies × seeds in worker processes, measured, resumable, grid chosen on validation."""

from __future__ import annotations

from pathlib import Path

import pytest

import lifelong.continual.run as run_module
from lifelong.continual.compare import MANIFEST, compare, execute_all, tensor_bytes
from lifelong.continual.run import build_stream, run
from lifelong.core.checkpoint import load_checkpoint
from lifelong.core.config import RunConfig
from lifelong.core.errors import ConfigError, IncompatibleError, RunExistsError, UnknownNameError
from lifelong.core.records import read_json

HIDDEN = 64
BASE = dict(benchmark="split-digits", scenario="class", limit_train=600, limit_test=300, epochs=3,
            batch_size=32, model_args={"hidden": [HIDDEN]})
ARGS = {"replay": {"buffer_size": 100}}


def _base(**kw) -> RunConfig:
    return RunConfig(**{**BASE, **kw})


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    records = []
    manifest = compare(["naive", "replay", "cumulative"], _base(), seeds=[0, 1], out=out, jobs=2,
                       strategy_args=ARGS, on_run=records.append)
    return out, manifest, records


def _results(out: Path, label: str) -> list[dict]:
    return [read_json(out / f / "results.json") for f in read_json(out / MANIFEST)["runs"][label]]


def _acc(out: Path, label: str) -> float:
    runs = _results(out, label)
    return sum(r["metrics"]["acc"] for r in runs) / len(runs)


def test_every_strategy_runs_over_every_seed(compared):
    out, manifest, records = compared
    assert manifest["failures"] == [] and len(records) == 6 and not any(r.get("skipped") for r in records)
    assert manifest["runs"] == {s: [f"runs/{s}-s0", f"runs/{s}-s1"] for s in ("naive", "replay", "cumulative")}
    for label in manifest["runs"]:
        runs = _results(out, label)
        assert [r["seed"] for r in runs] == [0, 1] and runs[0]["accuracy_matrix"] != runs[1]["accuracy_matrix"]
        assert all(r["config"]["strategy"] == label for r in runs)
    assert _results(out, "replay")[0]["config"]["strategy_args"] == ARGS


def test_a_worker_run_equals_the_same_run_in_process(compared, tmp_path):
    out, _, _ = compared
    done = _results(out, "replay")[1]
    again = run(RunConfig.from_dict({**done["config"], "out": str(tmp_path)}))
    assert again["accuracy_matrix"] == done["accuracy_matrix"]


def test_strategies_differ_as_the_literature_says(compared):
    """Replay beats fine-tuning, and retraining on everything beats both (class-incremental digits)."""
    out, _, _ = compared
    naive, replay, cumulative = (_acc(out, s) for s in ("naive", "replay", "cumulative"))
    assert replay > naive + 0.10, (naive, replay)
    assert cumulative > naive + 0.30, (naive, cumulative)


def test_stored_bytes_count_what_each_strategy_keeps(compared):
    out, _, _ = compared
    measures = {s: read_json(out / "runs" / f"{s}-s0" / "measures.json") for s in ("naive", "replay", "cumulative")}
    assert measures["naive"]["stored_bytes"] == 0
    # 100 buffered samples: 8×8 float32 inputs, int64 label and task label
    assert measures["replay"]["stored_bytes"] == 100 * (HIDDEN * 4 + 8 + 8)
    n_train = sum(e["n_train"] for e in _results(out, "cumulative")[0]["experiences"])
    assert measures["cumulative"] == {"stored_bytes": n_train * (64 * 4 + 8), "plugin_state_bytes": 0,
                                      "data_bytes": n_train * (64 * 4 + 8), "split": "test"}
    state, _ = load_checkpoint(out / "runs" / "replay-s0" / "checkpoint.pt")
    assert tensor_bytes(state["plugins"]) == measures["replay"]["plugin_state_bytes"]


def test_finished_runs_are_not_redone(compared):
    out, _, _ = compared
    before = {f: (out / f / "results.json").read_bytes() for f in ("runs/naive-s0", "runs/replay-s1")}
    records = []
    compare(["naive", "replay", "cumulative"], _base(), seeds=[0, 1], out=out, jobs=2, strategy_args=ARGS,
            on_run=records.append)
    assert len(records) == 6 and all(r["skipped"] for r in records)
    assert {f: (out / f / "results.json").read_bytes() for f in before} == before


def test_an_interrupted_run_resumes_to_the_same_numbers(compared, tmp_path, monkeypatch):
    out, _, _ = compared
    finished = _results(out, "naive")[0]
    real, saves = run_module.save_checkpoint, []

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "save_checkpoint", save_then_stop)
    config = RunConfig.from_dict({**finished["config"], "out": str(tmp_path / "runs")})
    with pytest.raises(KeyboardInterrupt):
        run(config)
    monkeypatch.undo()
    state, _ = load_checkpoint(tmp_path / "runs" / "naive-s0" / "checkpoint.pt")
    assert state["next_experience"] == 2  # the run really stopped half-way
    records = []
    compare(["naive"], _base(), seeds=[0], out=tmp_path, on_run=records.append)
    assert records == [{"folder": str(tmp_path / "runs" / "naive-s0"), "label": "naive"}]
    resumed = read_json(tmp_path / "runs" / "naive-s0" / "results.json")
    assert resumed["accuracy_matrix"] == finished["accuracy_matrix"]
    log = (tmp_path / "runs" / "naive-s0" / "metrics.jsonl").read_text().count('"evaluated"')
    assert log == 5  # experiences 0-1 before the interruption, 2-4 after it


def test_grid_is_chosen_on_validation_data_then_rerun_on_the_test_split(tmp_path):
    manifest = compare(["naive"], _base(epochs=1), seeds=[0], out=tmp_path, grid={"lr": [0.0, 0.003]},
                       val_fraction=0.25)
    selection = manifest["selection"]["naive"]
    assert [p["point"] for p in selection["points"]] == [{"lr": 0.0}, {"lr": 0.003}]
    assert selection["chosen"] == 1 and manifest["chosen"]["naive"] == {"lr": 0.003}
    frozen = read_json(tmp_path / selection["points"][0]["runs"][0] / "results.json")
    assert selection["points"][0]["val_acc"] == [frozen["metrics"]["acc"]]
    assert all(row == frozen["accuracy_matrix"][0] for row in frozen["accuracy_matrix"])  # lr 0 learns nothing
    final = read_json(tmp_path / manifest["runs"]["naive"][0] / "results.json")
    assert final["config"]["lr"] == 0.003
    test_sizes = [e.test_y.shape[0] for e in build_stream(_base())]
    for val, real, n_test in zip(frozen["experiences"], final["experiences"], test_sizes, strict=True):
        assert val["n_train"] + val["n_test"] == real["n_train"]  # carved from the training data
        assert val["n_test"] == round(real["n_train"] * 0.25) and real["n_test"] == n_test
    measures = read_json(tmp_path / selection["points"][1]["runs"][0] / "measures.json")
    assert measures["split"] == "validation"


def test_another_validation_fraction_is_another_split_and_a_failed_point_chooses_nothing(tmp_path):
    """Rerunning with another --val-fraction reused the finished selection runs of the old split (and
    recorded the new fraction); a failed grid point was skipped, the others' best chosen and the final
    runs made, so the rerun after the fix was refused. Both are now kept apart."""
    grid = {"lr": [0.0, 0.003]}
    bad = tmp_path / "selection" / "naive" / "lr=0.0-val0.5-s0"
    bad.mkdir(parents=True)
    (bad / "checkpoint.pt").write_bytes(b"corrupt")
    first = compare(["naive"], _base(epochs=1), seeds=[0], out=tmp_path, grid=grid, val_fraction=0.5)
    assert len(first["failures"]) == 1 and first["chosen"]["naive"] is None and first["runs"]["naive"] == []
    (bad / "checkpoint.pt").unlink()
    second = compare(["naive"], _base(epochs=1), seeds=[0], out=tmp_path, grid=grid, val_fraction=0.5)
    assert second["failures"] == [] and second["chosen"]["naive"] == {"lr": 0.003}
    third = compare(["naive"], _base(epochs=1), seeds=[0], out=tmp_path, grid=grid, val_fraction=0.25)
    runs = [p["runs"][0] for p in third["selection"]["naive"]["points"]]
    assert all("-val0.25-" in r for r in runs)
    real = read_json(tmp_path / third["runs"]["naive"][0] / "results.json")["experiences"][0]["n_train"]
    assert read_json(tmp_path / runs[0] / "results.json")["experiences"][0]["n_test"] == round(real * 0.25)


def test_impossible_combinations_fail_before_any_run(tmp_path):
    with pytest.raises(IncompatibleError, match="needs task labels"):
        compare(["naive", "hat"], _base(), seeds=[0], out=tmp_path)
    with pytest.raises(UnknownNameError, match="Did you mean 'replay'"):
        compare(["repaly"], _base(), seeds=[0], out=tmp_path)
    with pytest.raises(ConfigError, match=r"\['ewc'\]"):
        compare(["naive"], _base(), seeds=[0], out=tmp_path, strategy_args={"ewc": {"ewc_lambda": 1}})
    with pytest.raises(ConfigError, match="unknown keys"):
        compare(["replay"], _base(), seeds=[0], out=tmp_path, strategy_args={"replay": {"size": 1}})
    with pytest.raises(ConfigError, match="each once"):
        compare(["er", "replay"], _base(), seeds=[0], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_failing_run_does_not_stop_the_others(tmp_path):
    def job(strategy: str, name: str) -> dict:
        config = _base(strategy=strategy, epochs=1, out=str(tmp_path), name=name)
        return {"label": strategy, "config": config.to_dict(), "holdout": None, "modules": []}

    failures = execute_all([job("no-such-strategy", "bad"), job("naive", "good")], jobs=2)
    assert len(failures) == 1 and failures[0]["folder"] == str(tmp_path / "bad")
    assert failures[0]["error"].startswith("UnknownNameError: unknown strategy 'no-such-strategy'")
    assert (tmp_path / "good" / "results.json").exists()


def test_a_finished_run_of_another_configuration_is_refused(compared):
    out, _, _ = compared
    with pytest.raises(RunExistsError, match="differing keys: \\['epochs'\\]"):
        compare(["naive"], _base(epochs=2), seeds=[0], out=out)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"jobs": 0}, "jobs 0: give at least one worker process"),
    ({"seeds": [0, 0]}, r"seeds \[0, 0\]: give at least one, each once"),
    ({"seeds": []}, "give at least one, each once"),
    ({"val_fraction": 1.5}, "validation fraction 1.5 must lie strictly between 0 and 1"),
    ({"grid": {"seed": [0, 1]}}, "compare sets seed itself for every run; use --seeds"),
    ({"grid": {"strategy_args.replay.buffer_size": [1]}}, "compare sets strategy_args itself"),
    ({"grid": {"er.buffer_size": [10], "replay.buffer_size": [20]}}, "both set 'replay.buffer_size'"),
    ({"grid": {"lr": [0.1, -1]}}, "lr"),
    ({"grid": {"epochs": [1, 0]}}, "epochs"),
    ({"strategy_args": {"replay": {"weight": 2.0}, "er": {"buffer_size": 5}}}, "grouped under both 'replay' and 'er'"),
])
def test_bad_requests_are_refused_before_any_run(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        compare(["replay"], _base(), **{"seeds": [0], "out": tmp_path, **kwargs})
    assert not any(tmp_path.iterdir())


def test_grid_over_a_nested_run_setting(tmp_path):
    manifest = compare(["naive"], _base(epochs=1), seeds=[0], out=tmp_path,
                       grid={"model_args.hidden": [[16], [32]]}, val_fraction=0.25)
    points = manifest["selection"]["naive"]["points"]
    assert manifest["failures"] == [] and [p["point"] for p in points] == [
        {"model_args.hidden": [16]}, {"model_args.hidden": [32]}]
    tried = [read_json(tmp_path / p["runs"][0] / "results.json")["config"]["model_args"] for p in points]
    assert tried == [{"hidden": [16]}, {"hidden": [32]}]
    final = read_json(tmp_path / manifest["runs"]["naive"][0] / "results.json")
    assert final["config"]["model_args"] == {"hidden": manifest["chosen"]["naive"]["model_args.hidden"]}
