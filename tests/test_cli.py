"""The command line: a run end to end, listing, and one-line errors with exit code 2."""

import csv
import json

import numpy as np
import pytest

from lifelong.cli import main
from lifelong.data.sources.idx import write_idx
from lifelong.data.sources.mnist import IDX_FILES
from lifelong.report.run_report import METRICS


def _mnist_dir(folder, train_labels):
    rng = np.random.default_rng(0)
    n = len(train_labels)
    arrays = [rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.asarray(train_labels, np.uint8),
              rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.asarray(train_labels, np.uint8)]
    folder.mkdir()
    for name, array in zip(IDX_FILES, arrays, strict=True):
        write_idx(folder / name, array)
    return folder


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_run_writes_report_and_summary(tmp_path, capsys):
    code = main(["run", "--benchmark", "split-digits", "--strategy", "naive", "--epochs", "1",
                 "--out", str(tmp_path), "--name", "n", "--quiet", "model_args.hidden=[32]"])
    assert code == 0
    folder = tmp_path / "n"
    results = json.loads((folder / "results.json").read_text())
    assert results["config"]["model_args"] == {"hidden": [32]}
    assert {"report.md", "accuracy_matrix.png", "curves.png", "config.yaml"} <= {p.name for p in folder.iterdir()}
    assert "![accuracy matrix](accuracy_matrix.png)" in (folder / "report.md").read_text()
    assert main(["run", "--benchmark", "split-digits", "--strategy", "naive", "--epochs", "1",
                 "--out", str(tmp_path), "--name", "loud", "model_args.hidden=[32]"]) == 0
    out = capsys.readouterr().out
    loud = json.loads((tmp_path / "loud" / "results.json").read_text())["metrics"]
    assert all(key in out and f"{loud[key]:.3f}" in out for key in METRICS)  # the summary table
    assert "report:" in out and "report.md" in out.replace("\n", "")


def test_list_with_wildcards(capsys):
    assert main(["list", "c*", "--kind", "strategy"]) == 0
    out = capsys.readouterr().out
    assert "cumulative" in out and "naive" not in out


def test_unknown_strategy(tmp_path, capsys):
    assert main(["run", "--strategy", "nave", "--out", str(tmp_path)]) == 2
    assert "unknown strategy 'nave'" in _error_line(capsys)


def test_missing_dataset_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LIFELONG_MIRROR_MNIST", "http://127.0.0.1:9/")
    assert main(["run", "--benchmark", "split-mnist", "--data-root", str(tmp_path / "none"),
                 "--out", str(tmp_path)]) == 2
    assert "LIFELONG_DATA" in _error_line(capsys)


def test_label_out_of_range(tmp_path, capsys):
    root = _mnist_dir(tmp_path / "mnist", [0, 1, 2, 3, 4, 5, 6, 7, 8, 12])
    assert main(["run", "--benchmark", "split-mnist", "--data-root", str(root), "--out", str(tmp_path)]) == 2
    assert "12" in _error_line(capsys)  # LabelOutOfRangeError from the source


def test_empty_experience(tmp_path, capsys, trust_idx):
    root = _mnist_dir(tmp_path / "mnist", [0, 1, 2, 3, 4, 5, 6, 7, 0, 1])
    trust_idx(root, "mnist")
    assert main(["run", "--benchmark", "split-mnist", "--data-root", str(root), "--out", str(tmp_path)]) == 2
    assert "experience 4" in _error_line(capsys)


def test_corrupt_checkpoint_keeps_the_run_folder(tmp_path, capsys):
    args = ["run", "--benchmark", "split-digits", "--epochs", "1", "--out", str(tmp_path),
            "--name", "r", "--quiet"]
    assert main(args) == 0
    folder = tmp_path / "r"
    (folder / "checkpoint.pt").write_bytes(b"\x00garbage")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main([*args, "--resume"]) == 2
    assert "unreadable" in _error_line(capsys)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(args) == 2  # an existing run is not replaced without --overwrite
    assert "--resume" in _error_line(capsys)


def test_override_that_is_not_yaml(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), "model_args.hidden=[32"]) == 2
    assert "override 'model_args.hidden=[32'" in _error_line(capsys)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["run", "--epochs", "many"], ["run", "lr"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2


def test_datasets_reports_presence(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "bundled" in out and "fashion-mnist" in out


def test_demo_compares_one_strategy_per_family(tmp_path):
    from lifelong.cli import DEMO_STRATEGIES
    from lifelong.core.registries import STRATEGIES

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seeds", "1", "--jobs", "2", "--quiet"]) == 0
    families = {STRATEGIES.meta(n)["family"] for n in DEMO_STRATEGIES}
    assert {"baseline", "regularisation", "replay", "architecture", "curriculum", "prototype"} <= families
    with (out / "summary.csv").open() as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(DEMO_STRATEGIES)
    assert float(rows["replay"]["acc_mean"]) > float(rows["naive"]["acc_mean"]) + 0.3
    assert (out / "report.html").exists() and "![accuracy against time](pareto.png)" in (out / "report.md").read_text()
