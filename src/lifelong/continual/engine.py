"""The one continual training loop; strategies are plugins hooked into it.

The loop, with every hook in place (`P` = each plugin, in order)::

    R[0] = evaluate(untrained model)                       # row 0, for FWT
    for i, experience in enumerate(stream):
        model.adapt(experience.classes)                    # growing heads only
        P.before_experience(ctx)
        data = P.train_data(ctx, experience's tensors)     # cumulative / joint replace it
        optimiser = new optimiser over trainable parameters
        for epoch in range(epochs):
            order = P.epoch_order(ctx, data) or randperm(len(data), generator)
            for each slice of `batch_size` indices of order:
                batch = P.extend_batch(ctx, batch)         # replay appends samples
                outputs = forward(model, batch.x, batch.t)
                terms = {"ce": weighted CE on masked outputs} | P.loss_terms(ctx, batch, outputs)
                sum(terms).backward()                      # a non-finite term raises, naming it
                P.add_grads(ctx, batch)                    # closed-form gradients of constant terms
                P.observe_grads(ctx, batch)                # read-only: the gradient of every term
                P.after_backward(ctx, batch)               # may edit .grad (projection, masking)
                optimiser.step();  P.after_step(ctx, batch)
        P.after_experience(ctx)
        R[i + 1] = evaluate on every experience's test set (P.predict may supply scores)
        on_experience_end(i, engine)                       # the run layer checkpoints here

Plugins run in the spec's order, except architecture strategies (`Plugin.restructures`): they
come first in before_experience and after_experience (the structure is settled before anyone
looks at it) and last in train_data, extend_batch and after_backward (they route or mask what the
others made). `check` refuses, before training, combinations that cannot work
(`composition_problems`). Task-incremental streams mask logits to the task's classes, in training
and in evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.continual.engine_checks import check_outputs, setting_problems
from lifelong.continual.plugin import Batch, Context, Plugin, TrainData
from lifelong.core.checks import check_counts, check_positive
from lifelong.core.errors import IncompatibleError, NonFiniteLossError
from lifelong.core.optimizers import build_optimizer, check_optimizer
from lifelong.core.seeding import resolve_device
from lifelong.data.stream import Stream


def total_loss(terms: dict[str, torch.Tensor], where: str) -> torch.Tensor:
    """The sum of the named loss `terms`; NonFiniteLossError naming the non-finite ones and `where`."""
    total = sum(terms.values())
    if not torch.isfinite(total):
        bad = [k for k, v in terms.items() if not torch.isfinite(v)]
        raise NonFiniteLossError(
            f"loss term(s) {bad} became non-finite {where}; lower the learning rate or the plugin's "
            "weight, or check the inputs")
    return total


class Progress(Protocol):
    """What the engine reports progress to (the CLI's rich bar, or nothing)."""

    def start(self, label: str, total: int) -> None: ...
    def advance(self) -> None: ...
    def stop(self) -> None: ...


class Engine:
    """Trains `model` over a stream with `plugins`; holds the accuracy matrix and counters."""

    def __init__(self, model: nn.Module, plugins: Sequence[Plugin] = (), *, epochs: int = 1,
                 batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam",
                 eval_batch_size: int = 2048, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None, progress: Progress | None = None,
                 log: Callable[[dict[str, Any]], None] | None = None) -> None:
        check_counts("engine", epochs=epochs, batch_size=batch_size, eval_batch_size=eval_batch_size)
        self.lr = check_positive("engine: lr", lr)  # 0 is a frozen control
        self.optimizer_name = check_optimizer(optimizer)
        self.model = model.to(device)
        self.plugins = list(plugins)
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.device = resolve_device(device)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.progress = progress
        self.log = log or (lambda record: None)
        self.matrix: list[list[float]] = []
        self.timings: dict[str, list[float]] = {"train_seconds": [], "eval_seconds": []}
        self.next_experience = 0
        self.step = 0
        self._takes_task = bool(getattr(model, "takes_task", False))

    # -- the surface plugins see ---------------------------------------------------------------
    def check(self, stream: Stream) -> None:
        """Fail before training when a plugin or the model cannot run in this stream's setting, or the
        model cannot run on its inputs or score its classes (`engine_checks`)."""
        problems = setting_problems(self.plugins, self.model, stream, self._takes_task, self.epochs, self.batch_size)
        if problems:
            raise IncompatibleError("; ".join(problems))
        if self.next_experience == 0:  # once training began, strategies may have restructured (routed) the model
            check_outputs(self.model, stream, self._takes_task, self.device)

    def _structure_first(self) -> list[Plugin]:
        """The plugins, architecture strategies first: the model's structure is settled (installed,
        grown, pruned) before the other strategies look at it (a stable sort keeps the spec's order)."""
        return sorted(self.plugins, key=lambda p: not p.restructures)

    def _structure_last(self) -> list[Plugin]:
        """The plugins, architecture strategies last: they route or mask what the others have made
        of the data, the batch and the gradient."""
        return sorted(self.plugins, key=lambda p: p.restructures)

    def _forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t) if self._takes_task else self.model(x)

    def _masker(self, stream: Stream) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if stream.setting != "task":
            return lambda logits, t: logits
        class_mask = stream.class_mask().to(self.device)

        def mask(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return logits.masked_fill(~class_mask[t, : logits.shape[1]], torch.finfo(logits.dtype).min)

        return mask

    def context(self, stream: Stream, index: int, epoch: int = 0) -> Context:
        """The record handed to plugins for experience `index`."""
        return Context(self.model, stream, stream[index], index, epoch, self.step, self.generator,
                       self.device, stream.setting, self._forward, self._masker(stream),
                       routed=any(p.routes_model for p in self.plugins), epochs=self.epochs,
                       batch_size=self.batch_size)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stream: Stream, on_experience_end: Callable[[int, Engine], None] | None = None) -> list[list[float]]:
        """Train on the experiences not yet done and return the accuracy matrix (T+1 rows)."""
        self.check(stream)
        stream = stream.to(self.device)
        if not self.matrix:
            self.matrix.append(self.evaluate(stream, self.context(stream, 0)))
        for i in range(self.next_experience, len(stream)):
            ctx = self.context(stream, i)
            start = time.perf_counter()
            self.train_experience(ctx)
            self.timings["train_seconds"].append(time.perf_counter() - start)
            start = time.perf_counter()
            row = self.evaluate(stream, self.context(stream, i))
            self.timings["eval_seconds"].append(time.perf_counter() - start)
            self.matrix.append(row)
            self.next_experience = i + 1
            self.log({"event": "evaluated", "experience": i, "accuracy": row})
            if on_experience_end is not None:
                on_experience_end(i, self)
        return self.matrix

    def adapt(self, classes: Sequence[int]) -> None:
        """Let a growing model add units for `classes` (no-op for fixed models)."""
        adapt = getattr(self.model, "adapt", None)
        if adapt is not None:
            adapt(classes)
            self.model.to(self.device)

    def train_experience(self, ctx: Context) -> None:
        """Run every hook of one experience: adapt, train for `epochs`, after_experience."""
        exp = ctx.experience
        self.adapt(exp.classes)
        for p in self._structure_first():
            p.before_experience(ctx)
        data = TrainData(exp.train_x, exp.train_y, exp.train_t())
        for p in self._structure_last():  # an architecture sees the data the others chose (cumulative)
            data = p.train_data(ctx, data)
        if len(data):
            ctx = ctx.advance(data=data)
            self.adapt(sorted(set(data.y.unique().tolist())))
            params = [p for p in self.model.parameters() if p.requires_grad]
            optimizer = build_optimizer(self.optimizer_name, params, self.lr)
            n_batches = -(-len(data) // self.batch_size)
            if self.progress:
                self.progress.start(f"experience {ctx.index + 1}/{len(ctx.stream)}", n_batches * self.epochs)
            sums: dict[str, torch.Tensor] = {}
            for epoch in range(self.epochs):
                ctx = ctx.advance(epoch=epoch, step=self.step)
                order = self._order(ctx, data)
                self.model.train()
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    batch = Batch(data.x[idx], data.y[idx], data.t[idx], index=idx)
                    terms = self._train_step(ctx.advance(step=self.step), batch, optimizer)
                    for name, value in terms.items():
                        sums[name] = sums.get(name, 0) + value
                    if self.progress:
                        self.progress.advance()
            if self.progress:
                self.progress.stop()
            steps = max(1, n_batches * self.epochs)
            self.log({"event": "trained", "experience": ctx.index, "steps": self.step,
                      "loss": {k: float(v) / steps for k, v in sums.items()}})
        for p in self._structure_first():
            p.after_experience(ctx.advance(step=self.step))

    def _order(self, ctx: Context, data: TrainData) -> torch.Tensor:
        for p in self.plugins:
            order = p.epoch_order(ctx, data)
            if order is not None:
                return order.to(self.device)
        return torch.randperm(len(data), generator=self.generator).to(self.device)

    def _train_step(self, ctx: Context, batch: Batch, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        for p in self._structure_last():
            batch = p.extend_batch(ctx, batch)
        outputs = self._forward(batch.x, batch.t)
        logits = ctx.mask(outputs, batch.t)
        if batch.weight is None:
            terms = {"ce": F.cross_entropy(logits, batch.y)}
        else:
            terms = {"ce": batch.mean(F.cross_entropy(logits, batch.y, reduction="none"))}
        for p in self.plugins:
            for name, value in p.loss_terms(ctx, batch, outputs).items():
                terms[f"{p.name}.{name}"] = value
        total = total_loss(terms, f"at step {self.step} of experience {ctx.index}")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        for p in self.plugins:
            p.add_grads(ctx, batch)
        for p in self.plugins:
            p.observe_grads(ctx, batch)
        for p in self._structure_last():  # masks after any projection
            p.after_backward(ctx, batch)
        optimizer.step()
        for p in self.plugins:
            p.after_step(ctx, batch)
        self.step += 1
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def evaluate(self, stream: Stream, ctx: Context) -> list[float]:
        """Accuracy on every experience's test set (a row of R); a test set several experiences
        share (CORe50's fixed NI test sessions) is evaluated once."""
        self.model.eval()
        row = []
        done: dict[tuple[int, int, int | None], float] = {}
        # outside the task setting the model's masked logits ignore task labels; a plugin's may not
        by_task = stream.setting == "task" or any(type(p).predict is not Plugin.predict for p in self.plugins)
        for exp in stream:
            key = (id(exp.test_x), id(exp.test_y), exp.task if by_task else None)
            if key in done:
                row.append(done[key])
                continue
            correct = 0
            for start in range(0, len(exp.test_y), self.eval_batch_size):
                x = exp.test_x[start : start + self.eval_batch_size]
                y = exp.test_y[start : start + self.eval_batch_size]
                scores = self.predict(ctx, x, torch.full_like(y, exp.task))
                correct += int((scores.argmax(1) == y).sum())
            done[key] = correct / len(exp.test_y)
            row.append(done[key])
        return row

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Class scores for inputs `x` with task labels `t`: a plugin's, else masked logits."""
        for p in self.plugins:
            scores = p.predict(ctx, x, t)
            if scores is not None:
                return scores
        logits = self._forward(x, t)
        width = ctx.stream.n_classes
        if logits.shape[1] < width:  # a growing head that has not met every class yet
            pad = logits.new_full((logits.shape[0], width - logits.shape[1]), torch.finfo(logits.dtype).min)
            logits = torch.cat([logits, pad], 1)
        return ctx.mask(logits, t)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume at an experience boundary: tensors and plain values only.

        The optimiser is rebuilt at the start of every experience, so it holds no state here.
        """
        return {
            "model": self.model.state_dict(),
            "plugins": [p.state_dict() for p in self.plugins],
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "matrix": [list(r) for r in self.matrix],
            "timings": {k: list(v) for k, v in self.timings.items()},
            "next_experience": self.next_experience,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned.

        Plugins load first and `restore` any structure they added to the model (columns, gates,
        adapters), so that the model's weights then fit.
        """
        if len(state["plugins"]) != len(self.plugins):
            raise IncompatibleError(f"checkpoint holds {len(state['plugins'])} plugin states, "
                                    f"this run has {len(self.plugins)} plugins")
        for p, s in zip(self.plugins, state["plugins"], strict=True):
            p.load_state_dict(s)
            p.restore(self.model)
        self.model.load_state_dict(state["model"])
        self.model.to(self.device)
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.matrix = [list(r) for r in state["matrix"]]
        self.timings = {k: list(v) for k, v in state["timings"].items()}
        self.next_experience = int(state["next_experience"])
        self.step = int(state["step"])
