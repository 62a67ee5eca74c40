"""Finished runs grouped by strategy and summarised over seeds (mean ± std), the numbers reports show."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lifelong.continual.compare import MANIFEST, MEASURES, measure
from lifelong.continual.metrics import forgetting
from lifelong.continual.run import CHECKPOINT
from lifelong.continual.strategies import split_spec
from lifelong.core.errors import DataError, UnknownNameError
from lifelong.core.records import read_json
from lifelong.guide import UNKNOWN, strategy_card

# Measured quantities: key, column title, how to read it from a loaded run.
MEASURED: tuple[tuple[str, str], ...] = (
    ("acc", "ACC"), ("bwt", "BWT"), ("fwt", "FWT"), ("forgetting", "Forgetting"),
    ("seconds", "Wall time (s)"), ("peak_memory_mb", "Peak memory (MB)"),
    ("stored_bytes", "Stored"), ("parameters", "Parameters"),
)
# Run settings that do not tell strategies apart (seeds are averaged over).
NOT_GROUPING = ("seed", "name", "out", "device")
# Keys the reports read from a continual run's results.json and from a compare manifest.
RESULTS_KEYS = ("name", "seed", "config", "metrics", "accuracy_matrix", "timings", "peak_memory_mb", "parameters")
MANIFEST_KEYS = ("base", "runs")


def read_record(path: Path, keys: Sequence[str], what: str) -> dict[str, Any]:
    """A JSON object holding `keys`, or a DataError saying the file is not `what`."""
    try:
        record = read_json(path)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); rebuild it (rerun the run or the comparison) "
                        "or delete its folder") from exc
    missing = [k for k in keys if not isinstance(record, dict) or k not in record]
    if missing:
        raise DataError(f"{path} is not {what}: it lacks {missing}; `lifelong report` reads the folders of "
                        "`lifelong run` and `lifelong compare` (multi-task, curriculum and meta runs have their "
                        "own report.md)")
    return record


def load_run(folder: str | Path) -> dict[str, Any]:
    """results.json of a finished run plus its measures (from measures.json, else the checkpoint)."""
    folder = Path(folder)
    if not (folder / "results.json").exists():
        raise DataError(f"{folder} holds no results.json: it is not a finished run; "
                        "finish it with `lifelong run --resume` or `lifelong compare` first")
    results = read_record(folder / "results.json", RESULTS_KEYS, "the results of a continual run")
    if (folder / MEASURES).exists():
        measures = read_record(folder / MEASURES, (), "the measures of a continual run")
    elif (folder / CHECKPOINT).exists():
        measures = measure(folder)
    else:
        measures = {}
    values = {**results["metrics"], "seconds": results["timings"]["total_seconds"],
              "peak_memory_mb": results["peak_memory_mb"], "parameters": results["parameters"],
              "stored_bytes": measures.get("stored_bytes")}
    return {**results, "folder": str(folder), "measures": measures, "values": values}


def group_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Runs whose configs differ only by seed (and folder) form one group, labelled by strategy and,
    after the strategy's first group, by the settings in which it differs from that one."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    keys: dict[str, str] = {}
    first: dict[str, dict[str, Any]] = {}
    for r in runs:
        config = {k: v for k, v in r["config"].items() if k not in NOT_GROUPING}
        key = json.dumps(config, sort_keys=True)
        if key not in keys:
            strategy = config["strategy"]
            base = first.setdefault(strategy, config)
            differs = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(config.items()) if base.get(k) != v)
            keys[key] = f"{strategy} ({differs})" if differs else strategy
            groups[keys[key]] = []
        groups[keys[key]].append(r)
    return groups


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest (compare.json) of a `lifelong compare` folder."""
    return read_record(Path(out) / MANIFEST, MANIFEST_KEYS, f"the {MANIFEST} of `lifelong compare`")


def manifest_run_folders(out: str | Path, manifest: Mapping[str, Any]) -> dict[str, list[Path]]:
    """The finished run folders of each strategy of a `lifelong compare` folder."""
    return {label: [Path(out) / f for f in folders] for label, folders in manifest["runs"].items() if folders}


def manifest_groups(out: str | Path) -> tuple[dict[str, list[Mapping[str, Any]]], dict[str, Any]]:
    """The groups and the manifest of a `lifelong compare` folder."""
    manifest = read_manifest(out)
    groups = {label: [load_run(f) for f in folders] for label, folders in manifest_run_folders(out, manifest).items()}
    return groups, manifest


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value); None when a value is missing."""
    if not values or any(v is None for v in values):
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_matrix(runs: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """Element-wise mean of the runs' accuracy matrices."""
    matrices = [r["accuracy_matrix"] for r in runs]
    return [[statistics.fmean(m[i][j] for m in matrices) for j in range(len(matrices[0][0]))]
            for i in range(len(matrices[0]))]


def forgetting_curve(matrix: Sequence[Sequence[float]]) -> list[float]:
    """Forgetting after each experience k: the forgetting measure of R restricted to the first k."""
    return [forgetting([row[:k] for row in matrix[: k + 1]]) for k in range(1, len(matrix))]


def train_growth(runs: Sequence[Mapping[str, Any]]) -> float:
    """Mean training time of the later half of experiences over the earlier half's (1: constant)."""
    ratios = []
    for r in runs:
        seconds = r["timings"]["train_seconds"]
        half = len(seconds) // 2
        if half:
            early, late = statistics.fmean(seconds[:half]), statistics.fmean(seconds[half:])
            ratios.append(late / early if early > 0 else 1.0)
    return statistics.fmean(ratios) if ratios else 1.0


def card_of(spec: str) -> dict[str, Any]:
    """The guide's card of a (possibly combined) strategy spec; fields of a combination joined by `+`."""
    try:
        cards = [strategy_card(n) for n in split_spec(spec)]
    except UnknownNameError:
        return {"name": spec, "family": UNKNOWN, "memory": UNKNOWN, "memory_growth": UNKNOWN,
                "compute": UNKNOWN, "forgetting": UNKNOWN}
    if len(cards) == 1:
        return cards[0]
    joined = {k: " + ".join(str(c[k]) for c in cards) for k in ("family", "memory", "compute", "forgetting")}
    growth = "O(T)" if any(c["memory_growth"] == "O(T)" for c in cards) else cards[0]["memory_growth"]
    return {**cards[0], **joined, "name": spec, "memory_growth": growth}


def summarise(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per group: every measured quantity as (mean, std) over its seeds, and its card."""
    rows = []
    for label, runs in groups.items():
        spec = runs[0]["config"]["strategy"]  # one configuration per group: the runs differ by seed only
        row: dict[str, Any] = {"label": label, "seeds": [r["seed"] for r in runs], "card": card_of(spec),
                               "matrix": mean_matrix(runs), "train_growth": train_growth(runs)}
        for key, _ in MEASURED:
            row[key] = mean_std([r["values"][key] for r in runs])
        curves = [forgetting_curve(r["accuracy_matrix"]) for r in runs]
        row["forgetting_curve"] = [mean_std(step) for step in zip(*curves, strict=True)]
        rows.append(row)
    return rows
