"""A curriculum run: train with a curriculum and with random order, and write `runs/<name>/`.

`results.json` schema (version 1): `{"schema_version": 1, "name", "config": {...}, "curves":
{"curriculum" | "random": {"examples", "accuracy", "fraction"}}, "summary": {run: {"final",
"mean"}}, "pacing": {"examples", "fraction"}, "noisy_labels": int, "seconds", "seed",
"versions"}`; `config.yaml` holds the same config and `report.md` the plots.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lifelong.continual.run import versions
from lifelong.core.errors import ConfigError
from lifelong.core.records import atomic_write_json, atomic_write_yaml, prepare_run_folder
from lifelong.core.registries import PACINGS, SCORERS
from lifelong.core.seeding import seed_everything
from lifelong.curriculum.report import write_report
from lifelong.curriculum.scorers import Scorer
from lifelong.curriculum.train import (
    compare_with_random,
    inject_label_noise,
    random_order,
    train_curve,
)
from lifelong.data.sources import SourceData, load_source
from lifelong.data.sources.base import subsample
from lifelong.models import build_model

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CurriculumConfig:
    """Everything that defines a curriculum run (recorded in config.yaml and results.json)."""

    dataset: str = "digits"
    scorer: str = "loss"
    pacing: str = "root"
    c0: float = 0.1
    pace_until: float = 0.5
    anti: bool = False
    balanced: bool = True
    rescore_every: float = 1.0
    label_noise: float = 0.0
    teacher_epochs: int = 2
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    hidden: int = 256
    limit_train: int | None = None
    limit_test: int | None = None
    n_evals: int = 20
    seed: int = 0

    def run_name(self) -> str:
        """`curriculum-<dataset>-<scorer>-<pacing>[-anti]-s<seed>`."""
        anti = "-anti" if self.anti else ""
        return f"curriculum-{self.dataset}-{self.scorer}-{self.pacing}{anti}-s{self.seed}"


def prepare_data(config: CurriculumConfig) -> tuple[SourceData, int]:
    """The data set, subsampled and with label noise injected as configured; and the noisy count."""
    data = load_source(config.dataset)
    if config.limit_train or config.limit_test:
        data = subsample(data, config.limit_train, config.limit_test, seed=config.seed)
    noisy_y, noisy = inject_label_noise(data.train_y, config.label_noise, data.n_classes,
                                        torch.Generator().manual_seed(config.seed))
    data = SourceData(data.name, data.train_x, noisy_y, data.test_x, data.test_y, data.class_names)
    return data, int(noisy.sum())


def make_scorer(config: CurriculumConfig, model: torch.nn.Module, data: SourceData,
                progress: Callable[[int], None] | None = None) -> Scorer:
    """The configured scorer; a teacher scorer gets a copy of `model` trained in random order."""
    if not SCORERS.meta(config.scorer).get("needs_teacher"):
        return SCORERS.build(config.scorer)
    teacher = copy.deepcopy(model)
    n = data.train_y.shape[0]
    train_curve(teacher, data, random_order(n, torch.Generator().manual_seed(config.seed)),
                budget=max(1, config.teacher_epochs) * n, batch_size=config.batch_size,
                lr=config.lr, n_evals=1, progress=progress)
    return SCORERS.build(config.scorer, teacher=teacher)


def run_curriculum(config: CurriculumConfig, out: str | Path, *, overwrite: bool = False,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train the curriculum and random order from the same initial model; write the run folder."""
    folder = prepare_run_folder(out, overwrite)
    if SCORERS.canonical(config.scorer) == "precomputed":
        raise ConfigError("scorer 'precomputed' needs scores from Python "
                          "(PrecomputedScorer(scores)); choose another --scorer here")
    pacing = PACINGS.build(config.pacing, c0=config.c0)
    start = time.perf_counter()
    seed_everything(config.seed)
    data, n_noisy = prepare_data(config)
    model = build_model("mlp", data.input_shape, data.n_classes, [tuple(range(data.n_classes))],
                        hidden=(config.hidden,))
    scorer = make_scorer(config, model, data, progress)
    n = data.train_y.shape[0]
    curves = compare_with_random(
        model, data, scorer, pacing, epochs=config.epochs, pace_until=config.pace_until,
        anti=config.anti, balanced=config.balanced, rescore_every=round(config.rescore_every * n),
        batch_size=config.batch_size, lr=config.lr, n_evals=config.n_evals, seed=config.seed,
        progress=progress)
    total = config.pace_until * config.epochs * n
    grid = [round(config.epochs * n * k / 100) for k in range(101)]
    results = {
        "schema_version": SCHEMA_VERSION,
        "name": folder.name,
        "config": asdict(config),
        "curves": {name: curve.to_dict() for name, curve in curves.items()},
        "summary": {name: {"final": c.accuracy[-1], "mean": sum(c.accuracy[1:]) / (len(c.accuracy) - 1)}
                    for name, c in curves.items()},
        "pacing": {"examples": grid, "fraction": [pacing(t, total) for t in grid]},
        "noisy_labels": n_noisy,
        "seconds": time.perf_counter() - start,
        "seed": config.seed,
        "versions": versions(),
    }
    atomic_write_yaml(folder / "config.yaml", asdict(config))
    atomic_write_json(folder / "results.json", results)
    write_report(folder, results)
    return results
