"""Loggers by registry name (LOGGERS): `jsonl` always; `tensorboard` and `wandb` as extras, loaded lazily.

A logger takes the engine's records (`{"event": "trained"|"evaluated", "experience", ...}`) and a
final `{"event": "finished", "metrics", "timings"}`; `log_run` replays a finished run folder into
loggers (runs write metrics.jsonl as they train). A missing extra raises MissingExtraError with
the command that installs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from lifelong.core.errors import MissingExtraError
from lifelong.core.records import append_jsonl, read_json, read_jsonl
from lifelong.core.registries import LOGGERS


class Logger(Protocol):
    """What every logger does."""

    def log(self, record: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


def load_extra(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise MissingExtraError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"the {extra} logger needs the optional package {extra}: "
                                f"pip install 'lifelong[{extra}]'") from exc


def load_needs(name: str) -> ModuleType | None:
    """The optional package logger `name` needs (its `requires` metadata), imported; None if it needs none."""
    meta = LOGGERS.meta(name)
    return load_extra(meta["requires"], meta["extra"]) if "requires" in meta else None


def check_loggers(names: Iterable[str]) -> None:
    """Fail now, with the install command, when a named logger's optional package is missing."""
    for name in names:
        load_needs(name)


def scalars(record: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
    """(step, {tag: value}) of a record: numbers flattened to `group/name`, accuracies per experience."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            flat[prefix] = float(value)
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), inner)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            for i, inner in enumerate(value):
                walk(f"{prefix}/E{i + 1}", inner)

    for key, value in record.items():
        if key not in ("event", "experience", "steps"):
            walk(key, value)
    return int(record.get("experience", 0)), flat


@LOGGERS.register("jsonl", description="JSON lines, one record per line (always available)")
class JsonlLogger:
    """Appends each record, tagged with the run's name, to `folder/log.jsonl`."""

    def __init__(self, folder: str | Path, run: str) -> None:
        self.path = Path(folder) / "log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run = run

    def log(self, record: Mapping[str, Any]) -> None:
        append_jsonl(self.path, {"run": self.run, **record})

    def close(self) -> None:
        """Nothing to release: each record is written whole as it arrives."""


@LOGGERS.register("tensorboard", aliases=("tb",), extra="tensorboard", requires="torch.utils.tensorboard",
                  description="TensorBoard event files under folder/tensorboard/<run>")
class TensorBoardLogger:
    """Scalars per experience in TensorBoard (`pip install 'lifelong[tensorboard]'`)."""

    def __init__(self, folder: str | Path, run: str) -> None:
        self.writer = load_needs("tensorboard").SummaryWriter(log_dir=str(Path(folder) / "tensorboard" / run))

    def log(self, record: Mapping[str, Any]) -> None:
        step, values = scalars(record)
        for tag, value in values.items():
            self.writer.add_scalar(f"{record.get('event', 'record')}/{tag}", value, step)

    def close(self) -> None:
        self.writer.close()


@LOGGERS.register("wandb", extra="wandb", requires="wandb", description="a Weights & Biases run per lifelong run")
class WandbLogger:
    """Scalars per experience in Weights & Biases (`pip install 'lifelong[wandb]'`; offline works)."""

    def __init__(self, folder: str | Path, run: str, project: str = "lifelong") -> None:
        self.run = load_needs("wandb").init(project=project, name=run, dir=str(folder))

    def log(self, record: Mapping[str, Any]) -> None:
        step, values = scalars(record)
        event = record.get("event", "record")
        self.run.log({f"{event}/{tag}": value for tag, value in values.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


def build_loggers(names: Iterable[str], folder: str | Path, run: str) -> list[Logger]:
    """The loggers named (jsonl first, always), writing under `folder` for run `run`."""
    wanted = dict.fromkeys(["jsonl", *(LOGGERS.canonical(n) for n in names)])  # each once, jsonl first
    return [LOGGERS.build(name, folder=folder, run=run) for name in wanted]


def finished_record(results: Mapping[str, Any]) -> dict[str, Any]:
    """The last record of a run, from its results.json: final metrics, seconds and peak memory."""
    return {"event": "finished", "experience": len(results["accuracy_matrix"]) - 1,
            "metrics": results["metrics"], "seconds": results["timings"]["total_seconds"],
            "peak_memory_mb": results["peak_memory_mb"]}


class LiveLoggers:
    """Loggers for a run in progress, built at its first record, so that a run refused before
    training (its folder exists, its configuration differs) opens none (no empty W&B run). A
    resumed run logs the records from where it resumed; `log_run` replays a whole run."""

    def __init__(self, names: Iterable[str], folder: str | Path, run: str) -> None:
        self.names, self.folder, self.run = list(names), folder, run
        self.loggers: list[Logger] | None = None

    def __call__(self, record: Mapping[str, Any]) -> None:
        if self.loggers is None:
            self.loggers = build_loggers(self.names, self.folder, self.run)
        for logger in self.loggers:
            logger.log(record)

    def finish(self, results: Mapping[str, Any]) -> None:
        """Log the run's final record and close the loggers."""
        self(finished_record(results))
        self.close()

    def close(self) -> None:
        for logger in self.loggers or []:
            logger.close()
        self.loggers = []


def log_run(run_folder: str | Path, names: Iterable[str], folder: str | Path, run: str | None = None) -> None:
    """Replay a finished run (its metrics.jsonl, then its final metrics) into the named loggers.

    `run` names the run in the loggers (default: the run's own name).
    """
    run_folder = Path(run_folder)
    results = read_json(run_folder / "results.json")
    records = read_jsonl(run_folder / "metrics.jsonl")
    loggers = build_loggers(names, folder, run or results["name"])
    try:
        for logger in loggers:
            for record in [*records, finished_record(results)]:
                logger.log(record)
    finally:
        for logger in loggers:
            logger.close()

