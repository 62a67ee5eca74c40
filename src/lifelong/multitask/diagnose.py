"""`diagnose`: a multi-task run that also measures gradient conflicts, task affinities (Fifty et
al., 2021) and negative transfer against single-task baselines (Maninis et al., 2019's Δm)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from lifelong.core.errors import IncompatibleError
from lifelong.data.multitask import MultiTaskData, load_benchmark
from lifelong.multitask.diagnostics import (
    AffinityTracker,
    best_grouping,
    lookahead_affinity,
    transfer_report,
)
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.run import MTLConfig, build_trainer, final_primary, run_mtl, task_table


def single_task_baselines(config: MTLConfig, data: MultiTaskData) -> dict[str, float]:
    """Each task's primary test metric when the same architecture is trained on it alone."""
    values = {}
    for task in data.task_names:
        single = replace(config, weighting="uniform", weighting_args={},
                         train=replace(config.train, conflict_every=0))
        trainer = build_trainer(single, data.select([task]))
        trainer.fit()
        row = task_table(trainer.data)[0]
        values[task] = trainer.history[-1]["test"][task][row["primary"]]
    return values


def diagnose(config: MTLConfig, *, affinity_every: int = 5, lookahead_lr: float = 0.1,
             n_groups: Sequence[int] | None = None, baselines: bool = True,
             resume: bool = False, overwrite: bool = False,
             on_epoch: Callable[[MultiTaskTrainer], None] | None = None) -> dict[str, Any]:
    """Train `config` with conflict monitoring and lookahead affinities every `affinity_every`
    steps (an SGD lookahead of `lookahead_lr` on the shared parameters), then select at most n
    groups of tasks for each n in `n_groups` (default 1..k; TAG's network selection) and compare
    with single-task baselines.
    """
    data = load_benchmark(config.benchmark, **config.benchmark_args)
    if not data.shared:
        raise IncompatibleError("task affinity needs tasks that share inputs (one batch for all)")
    k = len(data.tasks)
    if k < 2:
        raise IncompatibleError(f"diagnose compares tasks with each other, but {config.benchmark!r} "
                                f"has {k} task; pick a benchmark with two or more tasks")
    config = replace(config, train=replace(config.train,
                                           conflict_every=config.train.conflict_every or 1))
    tracker = AffinityTracker(k)

    def probe(tr: MultiTaskTrainer, idx: torch.Tensor | None) -> None:
        if tr.step % affinity_every:
            return
        x = tr.train[tr.tasks[0]][0][idx]

        def losses(out: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.stack([tr.kinds[t].loss(out[t], tr.train[t][1][idx]) for t in tr.tasks])

        tracker.update(lookahead_affinity(tr.model, x, losses, lookahead_lr))

    def finish(tr: MultiTaskTrainer) -> dict[str, Any]:
        z = tracker.mean()
        groupings = {}
        for n in n_groups or range(1, k + 1):
            groups, score = best_grouping(z, n)
            groupings[str(n)] = {"groups": groups, "score": score}
        out: dict[str, Any] = {"affinity": z.tolist(), "affinity_records": tracker.count,
                               "groupings": groupings, "transfer": None}
        if baselines:
            mtl, higher = final_primary({"final": tr.history[-1]["test"],
                                         "tasks": task_table(tr.data)})
            out["transfer"] = transfer_report(mtl, single_task_baselines(config, data), higher)
        return out

    name = config.name or f"{config.run_name()}-diagnose"
    return run_mtl(replace(config, name=name), resume=resume, overwrite=overwrite, data=data,
                   before_step=probe, finish=finish, on_epoch=on_epoch, extra=tracker)
