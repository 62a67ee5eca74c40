"""How the multi-task trainer computes one update's gradients: losses from shared inputs or each
task's own batches, the Jacobian, the weighting's aggregation (sample splits, representation
gradients, head scales), the after-step losses FAMO asks for."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lifelong.core.errors import DataError, IncompatibleError, NonFiniteLossError
from lifelong.grad import jacobian, write_grad
from lifelong.grad.jacobian import flatten
from lifelong.grad.layerwise import LayerwiseTrunks, hook_free
from lifelong.grad.stitched import StitchedColumns
from lifelong.multitask.architectures.base import MultiTaskModel
from lifelong.multitask.losses import check_output
from lifelong.multitask.sampling import accumulated_gradient


def layerwise_of(model: MultiTaskModel, shared: list[torch.Tensor], private: list[torch.Tensor],
                 tasks: Sequence[str]) -> LayerwiseTrunks | StitchedColumns | None:
    """The model's layerwise Jacobian (`MultiTaskModel.layerwise`) when the trainer can use it: over
    exactly the shared parameters, in their order, with task parameters each owned by one task
    (`own_parameters`) that together are the private ones, and tasks in the model's order; else None."""
    layerwise = model.layerwise()
    if layerwise is None or tuple(tasks) != tuple(model.task_names):
        return None
    owned = [p for t in tasks for p in model.own_parameters(t)]
    if not _same(layerwise.params, shared) or len(owned) != len(private) or \
            {id(p) for p in owned} != {id(p) for p in private}:
        return None
    return layerwise


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class UpdateSteps:
    """The gradient half of `MultiTaskTrainer` (model, weighting, data, tasks, shared and private
    parameters, sampler, monitor and counters are the trainer's attributes)."""

    def _task_loss(self, task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if task not in self._checked:
            check_output(self.specs[task], out, y)
            self._checked.add(task)
        return self.kinds[task].loss(out, y)

    def _check_finite(self, losses: torch.Tensor) -> None:
        bad = [t for t, v in zip(self.tasks, losses.detach().tolist(), strict=True) if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(
                f"the loss of task(s) {bad} became non-finite at step {self.step} (epoch "
                f"{self.epoch}); lower the learning rate or check the targets"
            )

    def _losses(self, idx: torch.Tensor) -> torch.Tensor:
        """The task losses (k,) of the shared-input rows `idx`, from one forward."""
        out = self.model(self.train[self.tasks[0]][0][idx])
        losses = torch.stack([self._task_loss(t, out[t], self.train[t][1][idx]) for t in self.tasks])
        self._check_finite(losses)
        return losses

    def _shared_step(self, idx: torch.Tensor) -> torch.Tensor:
        if getattr(self.weighting, "samples", 1) > 1:
            return self._sampled_step(idx, self.weighting.samples)
        if self.config.micro_batch is not None and self.config.micro_batch < len(idx):
            return self._micro_step(idx, self.config.micro_batch)
        on_representation = getattr(self.weighting, "on_representation", False)
        if getattr(self.weighting, "jacobian_free", False) and not self._monitor_due():
            return self._combination_step(idx)
        if self.weighting.kind == "gradient" and not on_representation:
            losses, jac = self._losses_and_jacobian(idx)
            if self._monitor_due() and self.shared:
                self.monitor.update(jac[:, :sum(p.numel() for p in self.shared)], self.step)
            self._apply_jacobian(jac, losses.detach())
            return losses.detach()
        losses = self._losses(idx)
        if self._monitor_due() and self.shared:
            self.monitor.update(jacobian(losses, self.shared, retain_graph=True), self.step)
        if on_representation:
            self._representation_update(losses)
        else:
            total = self.weighting.combine(losses, shared=self.shared, step=self.step)
            (total + self.model.penalty()).backward()
        return losses.detach()

    def _combination_step(self, idx: torch.Tensor) -> torch.Tensor:
        """An aggregator whose weights w ignore J (sum, mean, constant, RGW): the shared update wᵀJ is the
        gradient of Σ_t w_t L_t, taken by one backward instead of forming J; the task parameters as usual."""
        losses = self._losses(idx)
        shared = torch.autograd.grad(self.weighting.combination().to(losses) @ losses, self.shared,
                                     retain_graph=True)
        update = flatten([*shared, *self._own_gradients(losses)])
        if not bool(torch.isfinite(update).all()):
            raise DataError(f"{type(self.weighting.aggregator).__name__}: the gradient of the weighted task losses "
                            f"has non-finite entries at step {self.step} although the losses are finite; check "
                            "the model for operations with infinite derivatives (e.g. sqrt at 0) or lower the "
                            "learning rate")
        self._write(update)
        return losses.detach()

    def _losses_and_jacobian(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The task losses (k,) of the shared-input rows `idx` and their Jacobian over the shared then
        the task parameters: by the layerwise backward when the model allows it (see `layerwise_of`),
        else from one forward and one batched backward."""
        if self.layerwise is None or not hook_free([self.model, *self.layerwise.modules]):
            losses = self._losses(idx)
            return losses, jacobian(losses, [*self.shared, *self.private])
        x = self.train[self.tasks[0]][0][idx]

        def task_losses(outputs: list[list[torch.Tensor]]) -> torch.Tensor:
            losses = torch.stack([
                self._task_loss(t, self.model.layerwise_output(t, x, own), self.train[t][1][idx])
                for t, own in zip(self.tasks, outputs, strict=True)])
            self._check_finite(losses)
            return losses

        return self.layerwise.jacobian(x, task_losses, [self.model.own_parameters(t) for t in self.tasks])

    def _sampled_step(self, idx: torch.Tensor, samples: int) -> torch.Tensor:
        """Aggregators that need independent estimates of J (MoDo, SDMGrad): the batch is split into
        `samples` disjoint parts, one forward and one batched backward each; the task heads take
        the size-weighted mean of the parts' gradients, i.e. the whole batch's gradient (`fit`
        drops an epoch's tail batch too short to split). BatchNorm normalises each part with its own
        statistics, and updates its running ones once per part, as for independent batches of that size."""
        parts = idx.tensor_split(samples)
        if min(len(part) for part in parts) == 0:
            raise IncompatibleError(f"{type(self.weighting.aggregator).__name__} splits every batch into "
                                    f"{samples} disjoint parts, but this batch has only {len(idx)} rows")
        share = torch.tensor([len(part) / len(idx) for part in parts])
        losses, rows = zip(*map(self._losses_and_jacobian, parts), strict=True)
        losses, jac = [part.detach() for part in losses], torch.stack(rows)
        mean = torch.einsum("s,skp->kp", share.to(jac), jac)
        if self._monitor_due() and self.shared:
            self.monitor.update(mean[:, :sum(p.numel() for p in self.shared)], self.step)
        losses = share.to(losses[0]) @ torch.stack(losses)
        self._apply_jacobian(jac, losses, private=mean)
        return losses

    def _micro_step(self, idx: torch.Tensor, size: int) -> torch.Tensor:
        """Shared inputs in micro-batches of `size` rows: the whole batch's losses and Jacobian are the
        row-share-weighted sums of the parts' (one forward and one batched backward each, one graph
        alive at a time), then the update as for per-task data (the trainer refuses what cannot)."""
        params = [*self.shared, *self.private]
        losses = torch.zeros(len(self.tasks), dtype=torch.float64)
        jac = torch.zeros(len(self.tasks), sum(p.numel() for p in params), device=self.device)
        for part in idx.split(size):
            part_losses, part_jac = self._losses_and_jacobian(part)
            jac += part_jac * (len(part) / len(idx))
            losses += part_losses.detach().double().cpu() * (len(part) / len(idx))
        if self._monitor_due() and self.shared:
            self.monitor.update(jac[:, :sum(p.numel() for p in self.shared)], self.step)
        self._update_from_jacobian(jac, losses, torch.ones(len(self.tasks), dtype=torch.bool))
        return losses

    def _representation_update(self, losses: torch.Tensor) -> None:
        """Aggregate the gradients w.r.t. the shared representation z and back-propagate the
        result through the trunk (MGDA-UB, Sener & Koltun, 2018; GradDrop)."""
        z = self.model.representation
        if z is None:
            raise IncompatibleError(
                f"{type(self.weighting).__name__} works on the shared representation, which "
                f"{type(self.model).__name__} does not expose; use the 'hps' architecture"
            )
        direction = self.weighting.aggregate(jacobian(losses, [z], retain_graph=True), losses.detach(),
                                             representation=z.detach())
        shared = torch.autograd.grad(z, self.shared, grad_outputs=direction.view_as(z),
                                     retain_graph=True)
        self._write(flatten([*shared, *self._own_gradients(losses)]))

    def _own_gradients(self, losses: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each task's gradient of its own parameters (times the aggregator's `task_scales`), by one
        backward that autograd limits to the task parameters' part of the graph."""
        scales = self.weighting.task_scales(losses.detach())
        return torch.autograd.grad(losses.sum() if scales is None else scales.to(losses) @ losses, self.private)

    def _per_task_step(self) -> torch.Tensor:
        """Each drawn task's mean loss and gradient row over its batches, then the weighting's update
        of the drawn tasks alone; returns the losses (k,), NaN for the tasks not drawn."""
        k = len(self.tasks)
        drawn = self.sampler.sample(self.step, self.config.tasks_per_step, self.generator) \
            if self.sampler else torch.arange(k)
        counts = torch.bincount(drawn, minlength=k)
        present = counts > 0
        params = [*self.shared, *self.private]
        jac = torch.zeros(k, sum(p.numel() for p in params), device=self.device)
        losses = torch.zeros(k, dtype=torch.float64)
        for i, task in enumerate(self.tasks):
            x, y = self.train[task]

            def loss_fn(xb: torch.Tensor, yb: torch.Tensor, task: str = task) -> torch.Tensor:
                return self._task_loss(task, self.model(xb)[task], yb)

            for _ in range(int(counts[i])):
                idx = self._next_indices(task)
                self._step_batches.setdefault(task, []).append(idx)
                loss, grad = accumulated_gradient(loss_fn, params, x[idx], y[idx],
                                                  self.config.micro_batch)
                losses[i] += loss / counts[i]
                jac[i] += grad / counts[i]
        self._check_finite(losses)
        if self._monitor_due() and self.shared:
            self.monitor.update(jac[:, :sum(p.numel() for p in self.shared)], self.step, present)
        if getattr(self.weighting, "on_representation", False):
            raise IncompatibleError("representation-based aggregators need tasks sharing inputs")
        self._update_from_jacobian(jac, losses, present)
        return losses.masked_fill(~present, math.nan)

    def _update_from_jacobian(self, jac: torch.Tensor, losses: torch.Tensor, present: torch.Tensor) -> None:
        """The weighting's update from the Jacobian (k × P) and losses (k,) of the `present` tasks
        (the others' rows are 0): aggregated, or through the chain rule for a loss weighting."""
        if self.weighting.kind == "gradient":  # the trainer refuses a sampler: every task is present
            self._apply_jacobian(jac, losses.to(jac.dtype))
            return
        # chain rule: ∂combine/∂L_t from a leaf copy of the losses, times each task's gradient
        proxy = losses.to(device=jac.device, dtype=jac.dtype).requires_grad_(True)
        subset = {} if bool(present.all()) else {"present": present}
        self.weighting.combine(proxy, shared=None, step=self.step, **subset).backward()
        self._write(proxy.grad @ jac)

    def _apply_jacobian(self, jac: torch.Tensor, losses: torch.Tensor,
                        private: torch.Tensor | None = None) -> None:
        """Write the aggregated shared update and each task's own gradient (times the aggregator's
        `task_scales`, if any); `jac` is k × P, or a stack of samples (then `private` is the k × P
        Jacobian the task parameters use)."""
        n_shared = sum(p.numel() for p in self.shared)
        shared = self.weighting.aggregate(jac[..., :n_shared], losses) if n_shared else jac.new_zeros(0)
        own = (jac if private is None else private)[:, n_shared:]
        scales = self.weighting.task_scales(losses)
        own = own.sum(0) if scales is None else scales.to(own) @ own
        self._write(torch.cat([shared.to(jac.dtype), own]))

    def _write(self, vector: torch.Tensor) -> None:
        """Set the model's gradients to `vector` (+ the penalty's gradient)."""
        params = [*self.shared, *self.private]
        penalty = self.model.penalty()
        if penalty.requires_grad:
            grads = torch.autograd.grad(penalty, params, allow_unused=True, materialize_grads=True)
            vector = vector + flatten(grads)
        write_grad(params, vector)

    @torch.no_grad()
    def _losses_after_step(self, idx: torch.Tensor | None) -> torch.Tensor:
        """The step's task losses recomputed on the same batches with the updated model (FAMO);
        the model stays in training mode, as for the losses before the step."""
        if self.data.shared:
            return self._losses(idx)

        def mean_loss(task: str) -> torch.Tensor:
            x, y = self.train[task]
            return torch.stack([self._task_loss(task, self.model(x[i])[task], y[i])
                                for i in self._step_batches[task]]).mean()

        return torch.stack([mean_loss(t) for t in self.tasks]).double()

    def _monitor_due(self) -> bool:
        return self.monitor is not None and self.step % self.config.conflict_every == 0
