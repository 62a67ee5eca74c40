"""`lifelong meta`: the run folder it writes, and its typed errors."""

import json

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lifelong.core.errors import ConfigError, IncompatibleError, RunExistsError, UnknownNameError
from lifelong.meta.cli import register
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
    result = CliRunner().invoke(app, ["meta", "--method", "prototypes", "--benchmark", "sine",
                                      "--out", str(tmp_path / "d"), "--quiet"])
    assert isinstance(result.exception, IncompatibleError)
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()
