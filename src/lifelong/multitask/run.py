"""A multi-task run from a config: build, train, checkpoint each epoch, write `runs/<name>/`.

Folder: `config.yaml`, `metrics.jsonl` (one line per epoch), `checkpoint.pt` (tensors and plain
values; `torch.load(weights_only=True)`), `results.json` and `report.md` with plots.
`results.json` (schema 1): `{"schema_version", "name", "config", "tasks": [{"name", "kind",
"n_outputs", "primary", "higher_is_better"}], "final": {task: {metric: value}}, "history":
[{"epoch", "step", "train_loss", "test", "train_seconds", "eval_seconds"}],
"weights_trajectory": [[w_1..w_k] per step], "conflicts": {...} | null, "diagnostics": {...}
| null, "timings": {"total_seconds", "seconds_per_step"}, "parameters", "seed", "versions"}`.
`train_loss` is each task's mean over the steps that drew it (NaN if a task sampler never did).
A weighting that draws random numbers takes a generator seeded from `seed` (`weighting_generator`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from lifelong.continual.run import versions
from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.checks import check_folder_name
from lifelong.core.config import typed_values
from lifelong.core.errors import CheckpointError, ConfigError, RunExistsError
from lifelong.core.records import (
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    check_run_folder,
    remove_run_folder,
)
from lifelong.core.registries import WEIGHTINGS
from lifelong.core.seeding import resolve_device, seed_everything
from lifelong.data.multitask import MultiTaskData, load_benchmark
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.losses import task_kind
from lifelong.multitask.presets import build_default, n_parameters
from lifelong.multitask.report import write_report
from lifelong.multitask.weighting import build_weighting

SCHEMA_VERSION = 1
CHECKPOINT = "checkpoint.pt"


@dataclass
class MTLConfig:
    """Everything that defines a multi-task run."""

    benchmark: str = "multi-digits"
    benchmark_args: dict[str, Any] = field(default_factory=dict)
    arch: str = "hps"
    arch_args: dict[str, Any] = field(default_factory=dict)
    weighting: str = "uniform"
    weighting_args: dict[str, Any] = field(default_factory=dict)
    width: int = 64
    depth: int = 2
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"
    name: str | None = None

    def run_name(self) -> str:
        """`name`, else `mtl-<benchmark>-<arch>-<weighting>-s<seed>` (one folder)."""
        default = f"mtl-{self.benchmark}-{self.arch}-{self.weighting}-s{self.seed}"
        return check_folder_name("run name", self.name or default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MTLConfig:
        """Build from a mapping; unknown keys and ill-typed values (top level or under `train`) fail together."""
        values = dict(values)
        train = values.pop("train", None) or {}
        if not isinstance(train, Mapping):
            raise ConfigError(f"multi-task config: train must be a mapping of training settings, got {train!r}")
        clean, problems = typed_values(cls, values)
        clean_train, train_problems = typed_values(TrainConfig, train, prefix="train.")
        if problems or train_problems:
            raise ConfigError(f"invalid multi-task configuration: {'; '.join(problems + train_problems)}. "
                              f"Known keys: {', '.join(sorted(cls.__dataclass_fields__))} and "
                              f"train.{{{', '.join(sorted(TrainConfig.__dataclass_fields__))}}}")
        return cls(**clean, train=TrainConfig(**clean_train))


def task_table(data: MultiTaskData) -> list[dict[str, Any]]:
    """The tasks with their kind and primary metric, as recorded in results."""
    rows = []
    for t in data.tasks:
        kind = task_kind(t)
        rows.append({"name": t.name, "kind": t.kind, "n_outputs": t.n_outputs,
                     "primary": kind.primary, "higher_is_better": kind.higher_is_better})
    return rows


def weighting_generator(seed: int) -> torch.Generator:
    """The generator of a weighting that draws random numbers (RLW, PCGrad…): seeded from the run's
    seed, on a stream of its own (NumPy's SeedSequence spawn), not the engine generator's."""
    stream = np.random.SeedSequence(seed % 2**64, spawn_key=(1,)).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(stream[0]))


def build_run_weighting(config: MTLConfig, n_tasks: int) -> torch.nn.Module:
    """The weighting a config names; one that takes a `generator` gets `weighting_generator(seed)`."""
    kwargs = dict(config.weighting_args)
    if "generator" in inspect.signature(WEIGHTINGS.get(config.weighting)).parameters:
        kwargs.setdefault("generator", weighting_generator(config.seed))
    return build_weighting(config.weighting, n_tasks, **kwargs)


def build_trainer(config: MTLConfig, data: MultiTaskData | None = None) -> MultiTaskTrainer:
    """Seed, then build the data, model, weighting and trainer a config names."""
    generator = seed_everything(config.seed)
    data = data if data is not None else load_benchmark(config.benchmark, **config.benchmark_args)
    model = build_default(config.arch, data, config.width, config.depth, **config.arch_args)
    weighting = build_run_weighting(config, len(data.tasks))
    return MultiTaskTrainer(model, weighting, data, config.train, generator,
                            resolve_device(config.device))


def _prepare(folder: Path, resume: bool, overwrite: bool) -> None:
    check_run_folder(folder)
    if (folder / "results.json").exists() and not (resume or overwrite):
        raise RunExistsError(f"{folder} already holds a finished run; pass --overwrite to replace it "
                             f"or choose another --name")
    if overwrite and folder.exists() and any(folder.iterdir()) and not (resume and (folder / CHECKPOINT).exists()):
        remove_run_folder(folder)  # with --resume too, a checkpoint is resumed when its configuration matches
    if (folder / CHECKPOINT).exists() and not resume:
        raise RunExistsError(f"{folder} holds an interrupted run; pass --resume to continue it "
                             f"or --overwrite to start again")


class Stateful(Protocol):
    """What a run checkpoints beside the trainer (e.g. the diagnostics' affinity tracker)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _saved_state(folder: Path, config: MTLConfig, overwrite: bool) -> dict[str, Any] | None:
    """The checkpoint's state when it was written by `config`; with `overwrite`, one of another
    configuration is removed with its folder (None), else refused."""
    state, saved = load_checkpoint(folder / CHECKPOINT)
    ours = config.to_dict()
    diff = sorted(k for k in ours if k not in ("out", "device") and ours[k] != saved.get(k))
    if diff and overwrite:
        remove_run_folder(folder)
        return None
    if diff:
        raise CheckpointError(f"the checkpoint in {folder} was written by another configuration "
                              f"(differs in {diff}); resume with the same settings or --overwrite")
    return state


def _restore(trainer: MultiTaskTrainer, folder: Path, state: dict[str, Any], extra: Stateful | None) -> None:
    trainer.load_state_dict(state)
    if extra is not None:
        extra.load_state_dict(state["extra"])
    atomic_write_text(folder / "metrics.jsonl", "")
    for record in trainer.history:
        append_jsonl(folder / "metrics.jsonl", record)


def run_mtl(config: MTLConfig, *, resume: bool = False, overwrite: bool = False,
            data: MultiTaskData | None = None,
            before_step: Callable[[MultiTaskTrainer, torch.Tensor | None], None] | None = None,
            finish: Callable[[MultiTaskTrainer], dict[str, Any]] | None = None,
            on_epoch: Callable[[MultiTaskTrainer], None] | None = None,
            extra: Stateful | None = None) -> dict[str, Any]:
    """Train `config`, checkpointing each epoch; write config, metrics, results and report.

    `before_step` is passed to `MultiTaskTrainer.fit`; `finish(trainer)` returns the
    diagnostics recorded under `results["diagnostics"]`; `on_epoch` is called after each
    epoch's checkpoint (progress bars); `extra`'s state is checkpointed with the trainer's and
    restored on resume (what `before_step` accumulates).
    """
    folder = Path(config.out) / config.run_name()
    _prepare(folder, resume, overwrite)
    start = time.perf_counter()
    trainer = build_trainer(config, data)
    state = _saved_state(folder, config, overwrite) if resume and (folder / CHECKPOINT).exists() else None
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_yaml(folder / "config.yaml", config.to_dict())
    if state is not None:
        _restore(trainer, folder, state, extra)

    def on_epoch_end(tr: MultiTaskTrainer) -> None:
        state = tr.state_dict() if extra is None else {**tr.state_dict(), "extra": extra.state_dict()}
        save_checkpoint(folder / CHECKPOINT, state, config.to_dict())
        append_jsonl(folder / "metrics.jsonl", tr.history[-1])
        if on_epoch is not None:
            on_epoch(tr)

    trainer.fit(on_epoch_end, before_step)
    extra = finish(trainer) if finish is not None else None
    total = time.perf_counter() - start
    results = {
        "schema_version": SCHEMA_VERSION, "name": config.run_name(), "config": config.to_dict(),
        "tasks": task_table(trainer.data), "final": trainer.history[-1]["test"],
        "history": trainer.history, "weights_trajectory": trainer.weights_trajectory,
        "conflicts": trainer.monitor.summary() if trainer.monitor else None,
        "diagnostics": extra,
        "timings": {"total_seconds": total,
                    "seconds_per_step": sum(h["train_seconds"] for h in trainer.history)
                    / max(trainer.step, 1)},
        "parameters": n_parameters(trainer.model), "seed": config.seed, "versions": versions(),
    }
    atomic_write_json(folder / "results.json", results)
    write_report(folder, results)
    return results


def final_primary(results: dict[str, Any]) -> tuple[dict[str, float], dict[str, bool]]:
    """Each task's primary test metric at the end of a run, and whether higher is better."""
    values = {t["name"]: results["final"][t["name"]][t["primary"]] for t in results["tasks"]}
    return values, {t["name"]: t["higher_is_better"] for t in results["tasks"]}

