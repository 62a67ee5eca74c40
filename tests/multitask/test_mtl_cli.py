"""The `lifelong mtl` command's options reach the benchmark as given."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from lifelong.core.errors import ConfigError
from lifelong.multitask.cli import register


def test_cli_passes_n_train_zero_to_the_benchmark_which_refuses_it(tmp_path):
    """`--n-train 0` used to be dropped (`if n_train`), so the run trained on the default size."""
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command so `mtl` stays a subcommand
    result = CliRunner().invoke(app, ["mtl", "--benchmark", "mmoe-synthetic", "--n-train", "0", "--out",
                                      str(tmp_path), "--quiet"])
    assert isinstance(result.exception, ConfigError)
    assert "mmoe-synthetic: n_train must be a positive integer, got 0" in str(result.exception)
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def test_cli_says_which_benchmarks_take_n_train(tmp_path):
    """It said "unknown keys ['n_train']. Accepted keys: []" for a documented flag."""
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["mtl", "--benchmark", "multi-digits", "--n-train", "100", "--out",
                                      str(tmp_path), "--quiet"])
    assert isinstance(result.exception, ConfigError)
    assert "'multi-digits' has a fixed size: drop --n-train" in str(result.exception)
    assert "mmoe-synthetic" in str(result.exception)
