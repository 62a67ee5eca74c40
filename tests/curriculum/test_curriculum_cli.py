"""`lifelong curriculum`: one report folder with results.json, report.md and PNG plots."""

import json

import pytest
import typer

from lifelong.core.errors import ConfigError, RunExistsError, UnknownNameError
from lifelong.curriculum.cli import register


def main(args: list[str]) -> None:
    """Run the command on an app of its own, as the main CLI does after `register(app)`."""
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that `curriculum` is a sub-command
    register(app)
    app(args=args, standalone_mode=False)


def test_writes_results_report_and_plots(tmp_path):
    out = tmp_path / "run"
    args = ["curriculum", "--dataset", "digits", "--scorer", "loss", "--pacing", "root", "--epochs", "6",
            "--limit-train", "300", "--label-noise", "0.2", "--seed", "3", "--out", str(out), "-q"]
    main(args)
    assert {p.name for p in out.iterdir()} == {"results.json", "config.yaml", "report.md",
                                               "accuracy.png", "pacing.png"}
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["pacing"] == "root" and results["config"]["seed"] == 3
    assert results["noisy_labels"] == 60
    curves = results["curves"]
    assert curves["curriculum"]["examples"] == curves["random"]["examples"]
    assert curves["random"]["examples"][-1] == 1800
    assert curves["random"]["accuracy"][-1] > 0.7          # 1800 examples of 10 digit classes
    assert results["pacing"]["fraction"][0] == 0.1 and results["pacing"]["fraction"][-1] == 1.0
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "![accuracy](accuracy.png)" in report and "![pacing](pacing.png)" in report

    with pytest.raises(RunExistsError, match="--overwrite"):  # the folder holds a run
        main(args)
    main([*args, "--overwrite", "--anti"])
    assert json.loads((out / "results.json").read_text())["config"]["anti"] is True


def test_teacher_scorer_and_typed_errors(tmp_path):
    out = tmp_path / "teacher"
    main(["curriculum", "--scorer", "transfer", "--pacing", "step", "--epochs", "1",
          "--limit-train", "200", "--out", str(out), "-q"])
    assert json.loads((out / "results.json").read_text())["config"]["scorer"] == "transfer"
    with pytest.raises(UnknownNameError, match="unknown pacing 'sqrtt'"):
        main(["curriculum", "--pacing", "sqrtt", "--out", str(tmp_path / "x"), "-q"])
    with pytest.raises(ConfigError, match="PrecomputedScorer"):
        main(["curriculum", "--scorer", "precomputed", "--out", str(tmp_path / "y"), "-q"])
