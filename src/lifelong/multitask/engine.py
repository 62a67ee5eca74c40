"""The multi-task training loop: any architecture, any weighting, shared or per-task data.

    for epoch in start..epochs-1:
        for each step of the epoch:
            shared inputs:  one x (a slice of a seeded permutation), every task's targets;
                            losses (k,) from one forward (`micro_batch`: one forward and one
                            batched backward per part, losses and J summed, chain rule as below)
            per-task data:  tasks drawn by the sampler (every task when there is none), each
                            drawn task's batch through `accumulated_gradient` (one backward per
                            micro-batch) → its mean loss and its gradient row J_t
            loss weighting:     total = weighting.combine(losses, shared=…, step=…) + penalty
                                (per-task data: chain rule through a leaf copy of the losses;
                                with a sampler, `present=` the drawn tasks: only they are weighed)
            gradient weighting: J = jacobian(losses, shared + task params), one batched
                                backward; shared grad = weighting.aggregate(J_shared, losses),
                                task grads = Σ_t J_t (each task's own), + ∇penalty
                                (`samples` > 1, MoDo/SDMGrad: one J per disjoint part of the batch)
            conflicts.update(J_shared) every `conflict_every` steps (when asked)
            optimizer.step()
            weighting.after_step(losses on the same batches, no grad) when it asks (FAMO)
        weighting.end_epoch(mean train losses, each over the steps that drew the task) (DWA)
        evaluate on the test split → per-task metrics; history; on_epoch_end(trainer)

The loop and the state are here; how one update's gradients are formed is in `steps.py`, the
hyper-parameters in `config.py`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.optimizers import build_optimizer, check_optimizer
from lifelong.data.multitask import MultiTaskData
from lifelong.multitask.architectures.base import MultiTaskModel
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.diagnostics import ConflictMonitor
from lifelong.multitask.losses import check_output, check_targets, task_kind
from lifelong.multitask.sampling import build_sampler
from lifelong.multitask.steps import UpdateSteps, layerwise_of
from lifelong.multitask.trainer_checks import (
    check_batch_sizes,
    check_epochs,
    check_has_shared,
    check_micro_batch,
    check_sampled_weighting,
    check_samples,
    check_shared_batch,
)


class MultiTaskTrainer(UpdateSteps):
    """Trains a `MultiTaskModel` with a weighting on `MultiTaskData`; history and state as plain values."""

    def __init__(self, model: MultiTaskModel, weighting: nn.Module, data: MultiTaskData,
                 config: TrainConfig, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> None:
        if set(model.task_names) != set(data.task_names):
            raise IncompatibleError(
                f"the model's heads {list(model.task_names)} do not match the data's tasks "
                f"{list(data.task_names)}; build the model for this data"
            )
        if getattr(weighting, "kind", None) not in ("loss", "gradient"):
            raise IncompatibleError("the weighting must have kind 'loss' or 'gradient'; "
                                    "build it with lifelong.multitask.weighting.build_weighting")
        check_optimizer(config.optimizer)
        self.device = torch.device(device)
        self.model, self.weighting = model.to(self.device), weighting.to(self.device)
        self.data, self.config, self.generator = data, config, generator
        self.tasks = data.task_names
        self.kinds = {t.name: task_kind(t) for t in data.tasks}
        self.specs = {t.name: t for t in data.tasks}
        check_batch_sizes(config.batch_size, self.tasks, data.shared)
        for t in data.tasks:
            check_targets(t, data.splits[t.name].train_y, "train")
            check_targets(t, data.splits[t.name].test_y, "test")
        self.train = {t: (s.train_x.to(self.device), s.train_y.to(self.device))
                      for t, s in data.splits.items()}
        self._parameters = list(model.parameters())
        self._take_parameters()
        check_epochs(weighting, config.epochs)
        params = [*self._parameters, *(p for p in weighting.parameters() if p.requires_grad)]
        self.optimizer = build_optimizer(config.optimizer, params, config.lr)
        self.sampler = None
        if config.sampler is not None:
            if data.shared:
                raise IncompatibleError("a task sampler needs per-task data; these tasks share inputs")
            check_sampled_weighting(weighting)
            sizes = [data.n_train(t) for t in self.tasks]
            self.sampler = build_sampler(config.sampler, sizes, **config.sampler_args)
            self.sampler.schedule(config.epochs, self.steps_per_epoch())
        check_samples(weighting, data.shared, self.batch_size(self.tasks[0]))
        check_micro_batch(config.micro_batch, max(self.batch_size(t) for t in self.tasks), model, weighting,
                          data.shared)
        check_shared_batch(weighting, data.shared)
        self.monitor = ConflictMonitor(self.tasks, config.conflict_threshold) \
            if config.conflict_every > 0 else None
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.weights_trajectory: list[list[float]] = []
        self._cursors = {t: [torch.empty(0, dtype=torch.long), 0] for t in self.tasks}
        self._step_batches: dict[str, list[torch.Tensor]] = {}  # this step's rows per task (per-task data)
        self._checked: set[str] = set()

    # ---- batches ---------------------------------------------------------------------------
    def batch_size(self, task: str) -> int:
        bs = self.config.batch_size
        return int(bs[task]) if isinstance(bs, Mapping) else int(bs)

    def steps_per_epoch(self) -> int:
        """Shared data: one pass (`fit` takes several passes, each its own permutation, when more
        are set); per-task data: Σ_t N_t / (batch · tasks per step) unless set."""
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        if self.data.shared:
            return math.ceil(self.data.n_train(self.tasks[0]) / self.batch_size(self.tasks[0]))
        draws = self.config.tasks_per_step if self.sampler else len(self.tasks)
        total = sum(self.data.n_train(t) / self.batch_size(t) for t in self.tasks)
        return max(1, math.ceil(total / draws))

    def _steps_per_pass(self, n: int) -> int:
        """The batches of one pass over `n` shared rows; a tail batch too short to split into a
        sampled aggregator's parts is left out."""
        bs, samples = self.batch_size(self.tasks[0]), getattr(self.weighting, "samples", 1)
        steps = n // bs if 0 < n % bs < samples else math.ceil(n / bs)
        if steps == 0:
            raise IncompatibleError(f"an epoch over {n} training rows has no batch (batch_size {bs}, "
                                    f"{samples} part(s) per batch); give it at least {samples} rows")
        return steps

    def _next_indices(self, task: str) -> torch.Tensor:
        """The next batch of `task`'s own seeded permutation, reshuffled when exhausted."""
        perm, pos = self._cursors[task]
        bs = self.batch_size(task)
        if pos + bs > perm.numel():
            perm, pos = torch.randperm(self.data.n_train(task), generator=self.generator), 0
        self._cursors[task] = [perm, pos + bs]
        return perm[pos:pos + bs]

    def _take_parameters(self) -> None:
        """The shared and task parameters to train: those that require grad now (frozen ones stay as they are)."""
        model = self.model
        self.shared = [p for p in model.shared_parameters() if p.requires_grad]
        self.private = [p for p in model.task_parameters() if p.requires_grad]
        check_has_shared(self.weighting, model, len(self.shared), len(model.shared_parameters()))
        self.layerwise = layerwise_of(model, self.shared, self.private, self.tasks)
        if self.layerwise is not None:  # the layerwise Jacobian's columns: each task's own parameters in turn
            self.private = [p for t in self.tasks for p in model.own_parameters(t)]
        self._requires_grad = [p.requires_grad for p in self._parameters]

    def train_step(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """One optimiser update; returns the per-task losses (k,), NaN for a task the sampler did not draw.
        Parameters frozen or unfrozen since the last step are left out or trained from this one on."""
        if not self.model.training:  # train() walks every module: only after an evaluation
            self.model.train()
        if any(p.requires_grad is not was for p, was in zip(self._parameters, self._requires_grad, strict=True)):
            self._take_parameters()
        self.optimizer.zero_grad(set_to_none=True)
        self._step_batches = {}
        losses = self._shared_step(idx) if self.data.shared else self._per_task_step()
        self.optimizer.step()
        if getattr(self.weighting, "needs_losses_after_step", False):
            self.weighting.after_step(self._losses_after_step(idx))
        weights = getattr(self.weighting, "weights", None)
        if not isinstance(weights, torch.Tensor):
            weights = getattr(self.weighting, "last_weights", None)
        if isinstance(weights, torch.Tensor):
            self.weights_trajectory.append([float(w) for w in weights.detach().reshape(-1)])
        self.step += 1
        return losses

    # ---- epochs ----------------------------------------------------------------------------
    def fit(self, on_epoch_end: Callable[[MultiTaskTrainer], None] | None = None,
            before_step: Callable[[MultiTaskTrainer, torch.Tensor | None], None] | None = None,
            epoch_order: Callable[[MultiTaskTrainer], torch.Tensor] | None = None,
            ) -> list[dict[str, Any]]:
        """Train the remaining epochs (resumes at `self.epoch`); returns the per-epoch history.

        `before_step(trainer, idx)` runs before each update with the batch's indices (shared
        data) or None (per-task data); diagnostics use it to probe the model. `epoch_order(trainer)`
        returns the training indices of one pass on shared data (e.g. a curriculum sampler's
        `indices()` after `set_epoch(trainer.epoch)`); by default a random permutation. An epoch is one
        pass, or `steps_per_epoch` steps over as many passes as they need (each a new call).
        """
        if epoch_order is not None and not self.data.shared:
            raise IncompatibleError("epoch_order orders shared-input examples; these tasks have their own data")
        bs = self.batch_size(self.tasks[0])
        while self.epoch < self.config.epochs:
            start = time.perf_counter()
            n_steps, per_pass, passes = self.steps_per_epoch(), 1, []
            if self.data.shared:
                n = self.data.n_train(self.tasks[0])
                draw = (lambda: epoch_order(self).to(self.device)) if epoch_order is not None else \
                    (lambda n=n: torch.randperm(n, generator=self.generator))
                passes = [draw()]
                per_pass = self._steps_per_pass(len(passes[0]))
                n_steps = self.config.steps_per_epoch or per_pass
                passes += [draw() for _ in range(math.ceil(n_steps / per_pass) - 1)]
            sums = torch.zeros(len(self.tasks), dtype=torch.float64)
            draws = torch.zeros(len(self.tasks), dtype=torch.float64)
            for i in range(n_steps):
                rows = (i % per_pass) * bs
                idx = passes[i // per_pass][rows:rows + bs] if passes else None
                if before_step is not None:
                    before_step(self, idx)
                losses = self.train_step(idx).double().cpu()
                sums += losses.nan_to_num(0.0)
                draws += ~losses.isnan()
            means = sums / draws  # each task's mean over the steps that drew it; NaN if none did
            end_epoch = getattr(self.weighting, "end_epoch", None)
            if callable(end_epoch):
                end_epoch(means)
            train_seconds = time.perf_counter() - start
            record = {
                "epoch": self.epoch + 1, "step": self.step,
                "train_loss": dict(zip(self.tasks, means.tolist(), strict=True)),
                "test": self.evaluate(), "train_seconds": train_seconds,
                "eval_seconds": time.perf_counter() - start - train_seconds,
            }
            self.history.append(record)
            self.epoch += 1
            if on_epoch_end is not None:
                on_epoch_end(self)
        return self.history

    @torch.no_grad()
    def evaluate(self, split: str = "test") -> dict[str, dict[str, float]]:
        """Per-task metrics (accuracy, MSE, mIoU as fits the task kind) on `split` ('test' or 'train')."""
        if split not in ("test", "train"):
            raise ConfigError(f"evaluate: split {split!r} is not 'test' or 'train' (the splits multi-task data "
                              "holds); hold a validation set out of the training data as its own data")
        self.model.eval()
        stats: dict[str, torch.Tensor] = {}
        bs = self.config.eval_batch_size
        for task in self.tasks:
            s = self.data.splits[task]
            x, y = (s.test_x, s.test_y) if split == "test" else (s.train_x, s.train_y)
            kind, n = self.kinds[task], self.specs[task].n_outputs
            for i in range(0, x.shape[0], bs):
                out, target = self.model(x[i:i + bs].to(self.device))[task], y[i:i + bs].to(self.device)
                check_output(self.specs[task], out, target)
                part = kind.stats(out, target, n).cpu()
                stats[task] = stats[task] + part if task in stats else part
        return {t: self.kinds[t].finalize(stats[t]) for t in self.tasks}

    # ---- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loads with `torch.load(weights_only=True)`)."""
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "weighting": self.weighting.state_dict(), "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout draws from it
            "epoch": self.epoch, "step": self.step, "history": self.history,
            "weights_trajectory": self.weights_trajectory,
            "cursors": {t: [p, int(c)] for t, (p, c) in self._cursors.items()},
            "monitor": self.monitor.state_dict() if self.monitor else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.weighting.load_state_dict(state["weighting"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])
        self.weights_trajectory = list(state["weights_trajectory"])
        self._cursors = {t: [p, int(c)] for t, (p, c) in state["cursors"].items()}
        if self.monitor is not None and state["monitor"] is not None:
            self.monitor.load_state_dict(state["monitor"])
