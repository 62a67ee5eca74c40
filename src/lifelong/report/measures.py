"""Finished runs grouped by strategy and summarised over seeds (mean ± std), the numbers reports show."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lifelong.cards import UNKNOWN, strategy_card
from lifelong.continual.compare import MANIFEST, MEASURES, measure
from lifelong.continual.metrics import forgetting
from lifelong.continual.run import CHECKPOINT
from lifelong.continual.strategies import split_spec
from lifelong.core.errors import DataError, UnknownNameError
from lifelong.core.records import read_json
from lifelong.report.run_report import METRICS

# Measured quantities: key, column title, how to read it from a loaded run.
MEASURED: tuple[tuple[str, str], ...] = (
    ("acc", "ACC"), ("bwt", "BWT"), ("fwt", "FWT"), ("forgetting", "Forgetting"),
    ("seconds", "Wall time (s)"), ("peak_memory_mb", "Peak memory (MB)"),
    ("stored_bytes", "Stored"), ("parameters", "Parameters"),
)
# Run settings that do not tell strategies apart (seeds are averaged over).
NOT_GROUPING = ("seed", "name", "out", "device")
# Run settings every compared run must share for their results to be comparable.
COMPARABLE = ("benchmark", "scenario", "benchmark_args", "limit_train", "limit_test", "model", "model_args", "head")
# Keys the reports read from a continual run's results.json and from a compare manifest.
RESULTS_KEYS = ("name", "seed", "config", "metrics", "accuracy_matrix", "timings", "peak_memory_mb", "parameters")
MANIFEST_KEYS = ("base", "runs")
REWRITE = "rebuild it (rerun the run or the comparison) or leave its folder out of the report"


def is_number(value: Any) -> bool:
    """Whether `value` is a finite JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    """Whether `value` is a JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


# Fields below results.json's top-level keys that the reports read: dotted path → (test, what it must be).
RESULTS_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "seed": (is_integer, "an integer"),
    **{f"config.{k}": (lambda v: isinstance(v, str), "a string")
       for k in ("strategy", "benchmark", "scenario", "model", "head")},
    **{f"config.{k}": (lambda v: isinstance(v, dict), "a mapping") for k in ("benchmark_args", "model_args")},
    **{f"config.{k}": (lambda v: v is None or is_integer(v), "an integer or null")
       for k in ("limit_train", "limit_test")},
    "config.epochs": (is_integer, "an integer"),
    "config.batch_size": (is_integer, "an integer"),
    "config.lr": (is_number, "a number"),
    **{f"metrics.{m}": (is_number, "a finite number") for m in METRICS},
    "timings.total_seconds": (is_number, "a finite number"),
    "timings.train_seconds": (lambda v: isinstance(v, list) and all(map(is_number, v)), "a list of numbers"),
    "peak_memory_mb": (is_number, "a finite number"),
    "parameters": (is_integer, "an integer"),
}


def read_record(path: Path, keys: Sequence[str], what: str) -> dict[str, Any]:
    """A JSON object holding `keys`, or a DataError saying the file is not `what`."""
    try:
        record = read_json(path)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); rebuild it (rerun the run or the comparison) "
                        "or delete its folder") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read as JSON text ({type(exc).__name__}: {exc}); rebuild it "
                        "(rerun the run or the comparison) or delete its folder") from exc
    foreign = ("; `lifelong report` reads the folders of `lifelong run` and `lifelong compare` (multi-task, "
               "curriculum and meta runs have their own report.md)")
    if not isinstance(record, dict):
        raise DataError(f"{path} is not {what}: it holds a JSON {type(record).__name__}, not an object{foreign}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise DataError(f"{path} is not {what}: it lacks {missing}{foreign}")
    return record


def check_results(path: Path, results: Mapping[str, Any]) -> None:
    """Raise a DataError naming the first field of `results` (read from `path`) that is missing or ill-typed."""
    for field, (test, kind) in RESULTS_FIELDS.items():
        node: Any = results
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                raise DataError(f"{path} lacks the field {field!r}; {REWRITE}")
            node = node[part]
        if not test(node):
            raise DataError(f"{path}: field {field!r} is {node!r}, not {kind}; {REWRITE}")
    matrix = results["accuracy_matrix"]
    rows = isinstance(matrix, list) and all(isinstance(row, list) and all(map(is_number, row)) for row in matrix)
    if not rows or len(matrix) < 2 or any(len(row) != len(matrix) - 1 for row in matrix):
        shape = [len(row) for row in matrix] if rows else "not lists of numbers"
        raise DataError(f"{path}: field 'accuracy_matrix' must be T+1 rows (row 0: the untrained model) of T ≥ 1 "
                        f"finite numbers each; its row lengths are {shape}; {REWRITE}")


def load_run(folder: str | Path) -> dict[str, Any]:
    """results.json of a finished run plus its measures (from measures.json, else the checkpoint)."""
    folder = Path(folder)
    if not (folder / "results.json").exists():
        raise DataError(f"{folder} holds no results.json: it is not a finished run; "
                        "finish it with `lifelong run --resume` or `lifelong compare` first")
    results = read_record(folder / "results.json", RESULTS_KEYS, "the results of a continual run")
    check_results(folder / "results.json", results)
    if (folder / MEASURES).exists():
        measures = read_record(folder / MEASURES, (), "the measures of a continual run")
        stored = measures.get("stored_bytes")
        if stored is not None and not is_number(stored):
            raise DataError(f"{folder / MEASURES}: field 'stored_bytes' is {stored!r}, not a number; delete the "
                            "file to count the bytes again from the checkpoint")
    elif (folder / CHECKPOINT).exists():
        measures = measure(folder)
    else:
        measures = {}
    values = {**results["metrics"], "seconds": results["timings"]["total_seconds"],
              "peak_memory_mb": results["peak_memory_mb"], "parameters": results["parameters"],
              "stored_bytes": measures.get("stored_bytes")}
    return {**results, "folder": str(folder), "measures": measures, "values": values}


def check_comparable(runs: Sequence[Mapping[str, Any]]) -> None:
    """Raise a DataError unless every run shares the first one's COMPARABLE settings (benchmark, model, ...)."""
    first = runs[0]["config"] if runs else {}
    odd = [r for r in runs if any(r["config"][k] != first[k] for k in COMPARABLE)]
    if odd:
        keys = [k for k in COMPARABLE if any(r["config"][k] != first[k] for r in odd)]
        runs_text = "; ".join(f"{r['folder']} has " + ", ".join(f"{k}={json.dumps(r['config'][k])}" for k in keys)
                              for r in [runs[0], *odd])
        raise DataError(f"the runs differ in {', '.join(keys)}, so their results are not comparable: {runs_text}; "
                        "report together only runs made with the same benchmark, scenario, benchmark_args, limits "
                        "and model (rerun the odd ones with the same settings, or report them separately)")


def group_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Comparable runs whose configs differ only by seed (and folder) form one group, labelled by strategy and,
    after the strategy's first group, by the settings in which it differs from that one."""
    check_comparable(runs)
    folders: dict[Path, str] = {}
    for r in runs:
        resolved = Path(r["folder"]).resolve()
        if resolved in folders:
            raise DataError(f"{r['folder']} is given twice (also as {folders[resolved]}); give each run folder once")
        folders[resolved] = r["folder"]
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
        twin = next((g for g in groups[keys[key]] if g["seed"] == r["seed"]), None)
        if twin is not None:
            raise DataError(f"{twin['folder']} and {r['folder']} are both {keys[key]} with seed {r['seed']}: the "
                            "same run twice (a copy?) would count as two seeds; give each configuration and seed "
                            "once")
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
