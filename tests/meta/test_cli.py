"""`lifelong meta`: the run folder it writes, and its typed errors."""

import json
import re

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lifelong.core.errors import ConfigError, IncompatibleError, RunExistsError, UnknownNameError
from lifelong.meta.cli import register
from lifelong.meta.methods import BENCHMARKS, METHODS
from lifelong.meta.run import run_meta


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps `meta` a named subcommand
        pass

    return app


def test_cli_writes_results_metrics_and_report(app, tmp_path):
    out = tmp_path / "sine-oml"
    result = CliRunner().invoke(app, [
        "meta", "--method", "oml", "--benchmark", "sine", "--out", str(out), "--quiet",
        "steps=3", "hidden=8", "pretrain_epochs=1", "benchmark.n_pretrain_episodes=2",
        "benchmark.n_test_points=10"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "oml" and results["metric"] == "mse" and results["meta_trained"]
    assert results["config"] == {"method_args": {"steps": 3, "hidden": 8, "pretrain_epochs": 1},
                                 "benchmark_args": {"n_pretrain_episodes": 2, "n_test_points": 10}}
    for key in ("result", "baseline"):
        r = results[key]
        assert len(r["matrix"]) == 11 and all(len(row) == 10 for row in r["matrix"])
        assert r["final"] == pytest.approx(sum(r["matrix"][-1]) / 10)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["phase"] == "train"] == [0, 1, 2]
    stream = [r for r in lines if r["phase"] == "stream"]
    assert len(stream) == 22 and stream[-1]["values"] == results["baseline"]["matrix"][-1]
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == "oml"
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "![training and continual evaluation](plot.png)" in report
    assert f"{results['result']['final']:.4f}" in report


def test_prototypes_run_on_fewshot_digits(tmp_path):
    results = run_meta("ncm", "fewshot-digits", tmp_path / "p", method_args={"pretrain_epochs": 1},
                       benchmark_args={"class_variants": 1})
    assert results["method"] == "prototypes" and results["metric"] == "accuracy"
    assert not results["meta_trained"] and 0 <= results["result"]["final"] <= 1
    assert len(results["result"]["matrix"]) == 6
    for key in ("result", "baseline"):
        r = results[key]
        assert r["final"] == pytest.approx(sum(r["matrix"][-1]) / 5)
        assert len(r["matrix"]) == 6 and all(len(row) == 5 for row in r["matrix"])
    # 5 new digit classes: chance is 0.2; the prototypes were seen at 0.80 after 1 epoch
    assert results["result"]["final"] > 0.4
    lines = [json.loads(line) for line in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["phase"] == "train"] == [0]  # one pre-training epoch


def test_existing_folder_needs_overwrite(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text("{}")
    kwargs = dict(method_args={"pretrain_epochs": 1}, benchmark_args={"class_variants": 1})
    with pytest.raises(RunExistsError, match="--overwrite"):
        run_meta("prototypes", "fewshot-digits", tmp_path / "r", **kwargs)
    run_meta("prototypes", "fewshot-digits", tmp_path / "r", overwrite=True, **kwargs)
    assert json.loads((tmp_path / "r" / "results.json").read_text())["method"] == "prototypes"


def test_typed_errors_name_the_problem(app, tmp_path):
    with pytest.raises(IncompatibleError, match="fewshot-digits"):
        run_meta("prototypes", "sine", tmp_path / "a")
    with pytest.raises(UnknownNameError, match="'anml'"):
        run_meta("anm", "sine", tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown keys \\['stepz'\\]"):
        run_meta("oml", "sine", tmp_path / "c", method_args={"stepz": 3})
    assert not (tmp_path / "c").exists()  # checked before the run folder is made
    result = CliRunner().invoke(app, ["meta", "--method", "prototypes", "--benchmark", "sine",
                                      "--out", str(tmp_path / "d"), "--quiet"])
    assert isinstance(result.exception, IncompatibleError)
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()


@pytest.mark.parametrize("method_args, message", [
    ({"hidden": 0}, "oml: hidden must be a positive integer, got 0"),
    ({"steps": "abc"}, "steps must be an integer ≥ 0"),
    ({"steps": -1}, "steps must be an integer ≥ 0"),
    ({"meta_lr": -1}, "meta_lr must be a finite number > 0, got -1"),
    ({"meta_batch": 0}, "meta_batch must be a positive integer, got 0"),
    ({"pretrain_epochs": -2}, "pretrain_epochs must be an integer ≥ 0"),
    ({"generator": 1}, "unknown keys \\['generator'\\]"),
    ({"callback": print}, "unknown keys \\['callback'\\]"),
])
def test_bad_method_arguments_fail_before_the_run_folder(tmp_path, method_args, message):
    kwargs = dict(benchmark_args={"n_pretrain_episodes": 2}, method_args=method_args)
    with pytest.raises(ConfigError, match=message) as caught:
        run_meta("oml", "sine", tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()
    accepted = str(caught.value).partition("Accepted keys:")[2]
    assert "generator" not in accepted and "callback" not in accepted


def test_the_seed_is_not_a_benchmark_argument(tmp_path):
    with pytest.raises(ConfigError, match="benchmark.seed=1.*--seed"):
        run_meta("oml", "sine", tmp_path / "r", benchmark_args={"seed": 1})
    with pytest.raises(ConfigError, match="unknown keys \\['bogus'\\]") as caught:
        run_meta("oml", "sine", tmp_path / "r", benchmark_args={"bogus": 1})
    assert "'seed'" not in str(caught.value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, error", [
    (["benchmark=sine"], "--benchmark"),
    (["hidden.width=3"], "\\['hidden'\\]"),
    (["benchmark.shots.n=3"], "\\['benchmark.shots'\\]"),
])
def test_cli_rejects_overrides_that_are_not_arguments(app, tmp_path, args, error):
    result = CliRunner().invoke(app, ["meta", "--out", str(tmp_path / "r"), "--quiet", *args])
    assert isinstance(result.exception, ConfigError)
    assert re.search(error, str(result.exception))
    assert not (tmp_path / "r").exists()


def test_cli_needs_a_thread_and_lists_the_registered_names(app, tmp_path):
    result = CliRunner().invoke(app, ["meta", "--threads", "0", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and not (tmp_path / "r").exists()
    help_text = CliRunner().invoke(app, ["meta", "--help"], env={"COLUMNS": "200"}).output
    assert all(name in help_text for name in METHODS.names() + BENCHMARKS.names())
