"""Fixtures of the strategy tests (the suite runs with --import-mode=importlib, so shared helpers
are reached through fixtures, not imports).

`replay`: the replay strategies' learning protocol on Split Fashion-MNIST (class-incremental, ~2000
training and ~1000 test samples per experience, MLP 784-400-400-10, Adam 1e-3, batch 32, 1 epoch,
seed 0; results cached per process, so naive trains once per session) and their resume checks.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lifelong.continual.engine import Engine
from lifelong.continual.metrics import average_accuracy
from lifelong.continual.plugin import Plugin
from lifelong.continual.run import run
from lifelong.continual.strategies import build_strategy
from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.config import RunConfig
from lifelong.core.seeding import seed_everything
from lifelong.data.scenarios import split
from lifelong.data.sources import load_source
from lifelong.data.sources.base import SourceData, subsample
from lifelong.data.stream import Stream
from lifelong.models import build_model

BUFFER = 500
_results: dict[str, list[list[float]]] = {}


def stream_of(fashion: SourceData) -> Stream:
    """Split Fashion-MNIST, class-incremental, subsampled to 10000 train / 5000 test samples."""
    return split(subsample(fashion, 10_000, 5_000), "class")


def matrix(fashion: SourceData, strategy: str, **args: Any) -> list[list[float]]:
    """Accuracy matrix of `strategy` under the protocol (cached)."""
    key = json.dumps([strategy, args], sort_keys=True)
    if key not in _results:
        stream = stream_of(fashion)
        generator = seed_everything(0, deterministic=True)
        model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(400, 400))
        engine = Engine(model, build_strategy(strategy, args), epochs=1, batch_size=32, lr=1e-3,
                        generator=generator)
        torch.set_num_threads(1)
        _results[key] = engine.run(stream)
    return _results[key]


def acc(fashion: SourceData, strategy: str, **args: Any) -> float:
    """Final average accuracy (ACC) of `strategy` under the protocol."""
    return average_accuracy(matrix(fashion, strategy, **args))


def interrupted_engine_resume(stream: Stream, strategy: str, args: dict[str, Any], stop_after: int,
                              tmp_file) -> tuple[tuple[list[list[float]], dict], tuple[list[list[float]], dict]]:
    """(uninterrupted, resumed) accuracy matrices and final model weights: the second run stops after `stop_after`
    experiences, saves `engine.state_dict()` with torch.save, and a fresh engine resumes from it.
    The MLP has dropout, so every draw from the global generator must line up after resuming."""

    class Stop(Exception):
        pass

    def engine() -> Engine:
        generator = seed_everything(0, deterministic=True)
        model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(32,),
                            dropout=0.2)
        return Engine(model, build_strategy(strategy, args), epochs=3, batch_size=16, generator=generator)

    uninterrupted = engine()
    full = uninterrupted.run(stream), uninterrupted.model.state_dict()

    def stop(index: int, eng: Engine) -> None:
        if index + 1 == stop_after:
            torch.save(eng.state_dict(), tmp_file)
            raise Stop

    first = engine()
    try:
        first.run(stream, on_experience_end=stop)
    except Stop:
        pass
    resumed = engine()
    resumed.load_state_dict(torch.load(tmp_file, weights_only=True))
    return full, (resumed.run(stream), resumed.model.state_dict())


class Interrupt(Exception):
    """Raised by the patched checkpoint writer to cut a run short."""


def resume_through_run(tmp_path: Path, interrupted_run: Callable[..., None], fashion: SourceData,
                       strategy: str, args: dict[str, Any]) -> dict[str, Any]:
    """Results of `run()` uninterrupted, interrupted after 2 experiences then resumed, and resumed
    from that checkpoint with the plugin state reset (`no_buffer`) or another generator state."""
    stream = split(subsample(fashion, 5_000, 1_000), "class")

    def config(folder: str) -> RunConfig:
        return RunConfig(benchmark="split-fashion-mnist", scenario="class", strategy=strategy,
                         strategy_args=dict(args), model_args={"hidden": [64]}, epochs=1, batch_size=64,
                         limit_train=5_000, limit_test=1_000, out=str(tmp_path / folder), name="r")

    out: dict[str, Any] = {"full": run(config("full"), stream=stream)}
    out["full_state"] = load_checkpoint(tmp_path / "full" / "r" / "checkpoint.pt")[0]
    interrupted_run(config("cut"), stream=stream)
    out["mid_state"] = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")[0]
    edits = {
        "no_buffer": lambda st: st["plugins"].__setitem__(0, build_strategy(strategy, args)[0].state_dict()),
        "other_generator": lambda st: st.__setitem__("generator", torch.Generator().manual_seed(99).get_state()),
    }
    for name, edit in edits.items():
        shutil.copytree(tmp_path / "cut" / "r", tmp_path / name / "r")
        ckpt = tmp_path / name / "r" / "checkpoint.pt"
        state, saved_config = load_checkpoint(ckpt)
        edit(state)
        save_checkpoint(ckpt, state, saved_config)
        out[name] = run(config(name), stream=stream, resume=True)
    out["resumed"] = run(config("cut"), stream=stream, resume=True)
    out["resumed_state"] = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")[0]
    return out


@pytest.fixture(scope="session")
def replay(fashion: SourceData) -> SimpleNamespace:
    """The replay protocol bound to Fashion-MNIST: `acc(strategy, **args)`, `matrix(...)`, `BUFFER`,
    `resume_through_run(tmp_path, interrupted_run, strategy, args)`, `engine_resume(stream, ...)`."""
    return SimpleNamespace(
        BUFFER=BUFFER,
        acc=lambda strategy, **args: acc(fashion, strategy, **args),
        matrix=lambda strategy, **args: matrix(fashion, strategy, **args),
        resume_through_run=lambda tmp_path, interrupted_run, strategy, args: resume_through_run(
            tmp_path, interrupted_run, fashion, strategy, args),
        engine_resume=interrupted_engine_resume,
        stream=lambda: stream_of(fashion),
    )


@pytest.fixture(scope="session")
def digits() -> Stream:
    """Class-incremental Split Digits (5 experiences of 2 classes)."""
    return split(load_source("digits"), "class")


@pytest.fixture(scope="session")
def engine_on() -> Callable[..., Engine]:
    """`engine_on(stream, plugins, head="single", epochs=1, batch_size=32)`: a seeded Engine over a small MLP."""

    def build(stream: Stream, plugins: list[Plugin], head: str = "single", epochs: int = 1,
              batch_size: int = 32) -> Engine:
        generator = seed_everything(0)
        model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), hidden=(32,),
                            head=head)
        return Engine(model, plugins, epochs=epochs, batch_size=batch_size, generator=generator)

    return build
