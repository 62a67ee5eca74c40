"""The comparison report: its tables hold the runs' numbers, the chapter's table, plots and CSV files."""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics

import pytest

from lifelong.continual.run import run
from lifelong.core.config import RunConfig
from lifelong.core.records import read_json
from lifelong.report.compare import (
    FORGETTING_WORDS,
    TRANSFER_WORDS,
    chapter_rows,
    report_runs,
    report_single_run,
    size,
    word,
)
from lifelong.report.comparison_plots import pareto_front

from .conftest import SMALL

CHAPTER_HEADER = "| Method | Category | Memory Cost | Compute Cost | Forgetting | Forward Transfer | Scalability |"


def _rows(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell} |")]


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}")[1].split("\n## ")[0]


def _runs(out, label):
    return [read_json(out / f / "results.json") for f in read_json(out / "compare.json")["runs"][label]]


def test_words_and_sizes():
    assert [word(v, FORGETTING_WORDS) for v in (-0.2, 0.01, 0.03, 0.1, 0.3, 0.9)] == [
        "None", "None", "Very Low", "Low", "Moderate", "Severe"]
    assert [word(v, TRANSFER_WORDS) for v in (0.0, 0.05, 0.2, 0.5)] == ["None", "Low", "Moderate", "High"]
    assert [size(n) for n in (0, 1023, 27200, 3 * 1024**2)] == ["0 B", "1023 B", "26.6 KB", "3.0 MB"]
    assert [size(n) for n in (5 * 1024**3, 5 * 1024**4, None)] == ["5.0 GB", "5120.0 GB", "unknown"]


def test_pareto_front_by_hand():
    # (time, accuracy): b is slower and worse than a; d is the fastest; c the most accurate
    points = [(1.0, 0.5), (2.0, 0.4), (3.0, 0.9), (0.5, 0.2)]
    assert pareto_front(points) == [3, 0, 2]


def test_measured_table_holds_mean_and_std_over_seeds(compared):
    text = (compared / "report.md").read_text()
    for label in ("naive", "replay", "cumulative"):
        runs = _runs(compared, label)
        accs = [r["metrics"]["acc"] for r in runs]
        forget = [r["metrics"]["forgetting"] for r in runs]
        [row] = _rows(_section(text, "Measurements"), label)
        assert row[1] == "2"
        assert row[2] == f"{statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}"
        assert row[5] == f"{statistics.fmean(forget):.3f} ± {statistics.stdev(forget):.3f}"
        assert row[9] == f"{runs[0]['parameters']:,} ± 0"
    [replay] = _rows(_section(text, "Measurements"), "replay")
    chosen = read_json(compared / "compare.json")["chosen"]["replay"]["replay.buffer_size"]
    assert replay[8] == f"{size(chosen * (64 * 4 + 16))} ± 0 B"  # the chosen buffer, full of 8×8 digits


def test_chapter_table_is_regenerated_from_the_measurements(compared):
    section = _section((compared / "report.md").read_text(), "The chapter's comparison table, from these measurements")
    assert CHAPTER_HEADER in section
    rows = {r[0]: r for label in ("naive", "replay", "cumulative") for r in _rows(section, label)}
    assert rows["naive"][1:3] == ["Baseline", "None = 0 B"] and rows["naive"][3] == "Low (×1.0)"
    assert rows["replay"][1] == "Replay" and rows["replay"][2].startswith("O(buffer) = ")
    assert rows["cumulative"][2].startswith("O(stream) = ") and rows["cumulative"][6] == "Low"  # grows with T
    for label, row in rows.items():
        runs = _runs(compared, label)
        forget = statistics.fmean(r["metrics"]["forgetting"] for r in runs)
        fwt = statistics.fmean(r["metrics"]["fwt"] for r in runs)
        assert row[4] == word(forget, FORGETTING_WORDS) and row[5] == word(fwt, TRANSFER_WORDS)


def test_every_image_of_the_report_exists(compared):
    text = (compared / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"pareto.png", "forgetting.png", "matrix-naive.png", "matrix-replay.png", "curves-1.png"} <= set(images)
    for image in images:
        assert (compared / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image


def test_selection_section_shows_the_validation_scores(compared):
    manifest = read_json(compared / "compare.json")
    section = _section((compared / "report.md").read_text(), "Hyper-parameters chosen on validation")
    for i, point in enumerate(manifest["selection"]["replay"]["points"]):
        mean = statistics.fmean(point["val_acc"])
        mark = " **chosen**" if i == manifest["selection"]["replay"]["chosen"] else ""
        value = point["point"]["replay.buffer_size"]
        assert f"| replay.buffer_size={value}{mark} | {mean:.3f} | 2 |" in section


def test_csv_files_hold_the_same_numbers(compared):
    with open(compared / "summary.csv", newline="") as fh:
        summary = {row["method"]: row for row in csv.DictReader(fh)}
    with open(compared / "runs.csv", newline="") as fh:
        runs = list(csv.DictReader(fh))
    assert set(summary) == {"naive", "replay", "cumulative"} and len(runs) == 6
    accs = [r["metrics"]["acc"] for r in _runs(compared, "replay")]
    assert float(summary["replay"]["acc_mean"]) == pytest.approx(statistics.fmean(accs))
    assert float(summary["replay"]["acc_std"]) == pytest.approx(statistics.stdev(accs))
    assert sorted(float(r["acc"]) for r in runs if r["method"] == "replay") == sorted(accs)


def test_report_of_plain_run_folders_groups_seeds(tmp_path):
    folders = []
    for strategy, seed in (("naive", 0), ("naive", 1), ("replay", 0)):
        config = RunConfig(**SMALL, strategy=strategy, seed=seed, out=str(tmp_path), name=f"{strategy}{seed}")
        run(config)
        folders.append(tmp_path / config.name)
    report = report_runs(folders, tmp_path / "cmp", "Plain runs")
    rows = _rows(_section(report.read_text(), "Measurements"), "naive") + _rows(report.read_text(), "replay")
    assert [r[1] for r in rows[:2]] == ["2", "1"]
    # no measures.json: counted from the checkpoint; a 500-sample buffer holds all 300 training samples
    assert rows[1][8] == size(300 * (64 * 4 + 16))
    single = report_single_run(folders[2])
    assert single == tmp_path / "replay0" / "report.md"
    assert {"report.html", "summary.csv", "runs.csv", "accuracy_matrix.png"} <= {p.name for p in folders[2].iterdir()}


def test_the_heading_gives_each_strategy_its_own_training_settings(compared, tmp_path):
    folders = [tmp_path / f for f in ("naive-s0", "replay-s0")]
    for folder in folders:
        shutil.copytree(compared / "runs" / folder.name, folder)
    results = json.loads((folders[1] / "results.json").read_text())
    results["config"]["lr"] = 0.01
    (folders[1] / "results.json").write_text(json.dumps(results))
    text = report_runs(folders, tmp_path / "cmp").read_text()
    assert "batch 32, lr 0.001 (naive), 0.01 (replay); seeds 0." in text


def test_chapter_row_of_a_strategy_without_metadata_says_unknown():
    card = {"family": "unknown", "memory": "unknown", "memory_growth": "unknown", "stores": "unknown"}
    naive = {"family": "baseline", "memory": "None", "memory_growth": "O(1)", "stores": "nothing"}

    def row(label, card, seconds):
        return {"label": label, "card": card, "seconds": (seconds, 0.0), "forgetting": (0.3, 0.0),
                "fwt": (0.0, 0.0), "stored_bytes": (None, None), "train_growth": 1.0}

    rows = chapter_rows([row("naive", naive, 2.0), row("mystery", card, 5.0)])
    assert rows[1] == ["mystery", "Unknown", "unknown = unknown", "Medium (×2.5)", "Moderate", "None", "High"]
