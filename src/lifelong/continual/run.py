"""A continual run from a config: build everything, train, checkpoint, and write `runs/<name>/`.

`results.json` schema (version 1), stable for scripts:
`{"schema_version": 1, "name", "config": {...}, "metrics": {"acc", "bwt", "fwt", "forgetting",
"learning_accuracy"}, "accuracy_matrix": [[...] × (T+1)], "experiences": [{"id", "classes",
"task", "n_train", "n_test"}], "timings": {"train_seconds": [...], "eval_seconds": [...],
"total_seconds"}, "parameters": int, "parameter_growth": {strategy: report}, "peak_memory_mb": float,
"seed", "versions": {...}}`.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lifelong.continual.engine import Engine, Progress
from lifelong.continual.metrics import all_metrics, forgetting_per_task
from lifelong.continual.strategies import build_strategy
from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.config import RunConfig, load_config
from lifelong.core.errors import CheckpointError, RunExistsError
from lifelong.core.records import (
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    prepare_run_folder,
    read_jsonl,
)
from lifelong.core.seeding import resolve_device, seed_everything
from lifelong.data.scenarios import build_benchmark
from lifelong.data.stream import Stream
from lifelong.models import build_model

SCHEMA_VERSION = 1
CHECKPOINT = "checkpoint.pt"


def restart_without_checkpoint(folder: Path, config: RunConfig, overwrite: bool) -> None:
    """Resuming a folder with no checkpoint starts the run afresh: refused when the folder holds a
    run of another configuration (unless `overwrite`), else cleared so no old record mixes in."""
    saved = folder / "config.yaml"
    if saved.exists() and not overwrite:
        differing = config.diff(load_config(saved))
        if differing:
            raise RunExistsError(f"{folder} holds a run of another configuration (differing keys: "
                                 f"{differing}) and no checkpoint to resume; pass --overwrite to replace "
                                 "it, or choose another --name")
    prepare_run_folder(folder, overwrite=True)


def keep_log_until(path: Path, next_experience: int) -> None:
    """Drop the log records of experiences from `next_experience` on (written after the checkpoint
    being resumed, they are written again), so a resumed log equals an uninterrupted one."""
    records = read_jsonl(path)
    kept = [r for r in records if r.get("experience", -1) < next_experience]
    if len(kept) < len(records):
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def build_stream(config: RunConfig) -> Stream:
    """The stream a config names (benchmark, setting, data root, subset, builder arguments)."""
    limit = (config.limit_train, config.limit_test) \
        if config.limit_train is not None or config.limit_test is not None else None
    return build_benchmark(config.benchmark, config.scenario, root=config.data_root, limit=limit,
                           **config.benchmark_args)


def training_options(config: RunConfig) -> dict[str, Any]:
    """The Engine settings `config` names (each checked when the Engine is built)."""
    return {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
            "optimizer": config.optimizer, "device": resolve_device(config.device)}


def build_engine(config: RunConfig, stream: Stream, **options: Any) -> Engine:
    """`config`'s model and strategy in an Engine taking `options`; IncompatibleError if `stream` rules them out."""
    model = build_model(config.model, stream.input_shape, stream.n_classes, stream.task_classes(),
                        head=config.head, **config.model_args)
    engine = Engine(model, build_strategy(config.strategy, config.strategy_args), **options)
    engine.check(stream)
    return engine


def versions() -> dict[str, str]:
    """Versions of Python, torch and lifelong, recorded in every result."""
    from lifelong import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "lifelong": __version__}


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def run(config: RunConfig, *, resume: bool = False, overwrite: bool = False,
        progress: Progress | None = None, stream: Stream | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `config`, checkpointing after each experience; write config, log and results.json.

    Each record the engine logs goes to metrics.jsonl and, as it happens, to `on_record`
    (live loggers: TensorBoard, W&B).
    """
    folder = config.folder()
    ckpt = folder / CHECKPOINT
    if not resume:
        prepare_run_folder(folder, overwrite, holds="a run", fix="pass --resume to continue it, "
                           "--overwrite to replace it, or choose another --name")
    elif not ckpt.exists():
        restart_without_checkpoint(folder, config, overwrite)
    state = None
    if resume and ckpt.exists():
        state, saved = load_checkpoint(ckpt)
        differing = config.diff(RunConfig.from_dict(saved))
        if differing and overwrite:  # --resume --overwrite: resume a matching checkpoint, else start afresh
            prepare_run_folder(folder, overwrite=True)
            state = None
        elif differing:
            raise CheckpointError(f"{ckpt} was written by another configuration; differing keys: "
                                  f"{differing}. Resume with the same settings or choose another --name")

    generator = seed_everything(config.seed)
    stream = stream if stream is not None else build_stream(config)
    log_path = folder / "metrics.jsonl"

    def log(record: dict[str, Any]) -> None:
        append_jsonl(log_path, record)
        if on_record is not None:
            on_record(record)

    engine = build_engine(config, stream, **training_options(config), generator=generator, progress=progress,
                          log=log)
    folder.mkdir(parents=True, exist_ok=True)
    if state is not None:
        for exp in stream[: int(state["next_experience"])]:
            engine.adapt(exp.classes)  # growing heads reach the checkpoint's shape before loading
        engine.load_state_dict(state)
        keep_log_until(log_path, int(state["next_experience"]))
    atomic_write_yaml(folder / "config.yaml", config.to_dict())

    def checkpoint(_index: int, eng: Engine) -> None:
        save_checkpoint(ckpt, eng.state_dict(), config.to_dict())

    matrix = engine.run(stream, on_experience_end=checkpoint)
    results = {
        "schema_version": SCHEMA_VERSION,
        "name": config.run_name(),
        "config": config.to_dict(),
        "metrics": all_metrics(matrix),
        "forgetting_per_task": forgetting_per_task(matrix),
        "accuracy_matrix": matrix,
        "experiences": [{"id": e.id, "classes": list(e.classes), "task": e.task,
                         "n_train": e.n_train, "n_test": int(e.test_y.shape[0])} for e in stream],
        "timings": {**engine.timings, "total_seconds": sum(engine.timings["train_seconds"]) +
                    sum(engine.timings["eval_seconds"])},
        "parameters": sum(p.numel() for p in engine.model.parameters()),
        "parameter_growth": {p.name: report for p in engine.plugins if (report := p.parameter_report()) is not None},
        "peak_memory_mb": peak_memory_mb(),
        "seed": config.seed,
        "versions": versions(),
    }
    atomic_write_json(folder / "results.json", results)
    return results
