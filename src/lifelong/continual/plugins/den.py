"""Dynamically Expandable Networks (Yoon et al. 2018) for MLPs.

Task 1 trains the whole network with L1 sparsity. Each later task t:
1. trains its new head alone with L1 (`phase_epochs`), then selects by breadth-first search the
   units connected to it through non-zero weights (selective retraining's subnetwork S);
2. the engine's loop retrains S only (gradients outside S zeroed) with ℓ2 and the pull
   (λ/2)‖W − W^{t−1}‖² of the authors' code, and proximal L1 after every step;
3. if the training loss stays above `loss_threshold` (τ), adds `k` units to every hidden layer,
   trains them with L1 and group sparsity (proximal, one group per unit's incoming weights and
   bias) and removes the new units whose group became zero;
4. duplicates every old unit whose incoming weights drifted by more than `split_threshold` (σ,
   ℓ2 distance; at most k per layer, largest drift first): the copy keeps the new weights for
   task t, the original gets its old weights back; then retrains task t's part with the pull.
Units carry timestamps, so earlier tasks compute with the units they had (timestamped
inference). Proximal thresholds are per step, as in the authors' code. Hyper-parameter
defaults are those of the authors' released code (l1 1e-5, l2 1e-4, group 1e-3, λ 0.5, k 10,
τ 0.01, σ 0.05, Adam 1e-3, batch 256).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import nn

from lifelong.continual.phases import fit, mean_loss
from lifelong.continual.plugin import Batch, Context, Plugin
from lifelong.continual.task_identity import TaskSlots, route_or_infer
from lifelong.core.checks import check_count, check_flag, check_positive
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.models.expandable import ExpandableMLP
from lifelong.models.layer_list import device_of, layer_list, reset_parameters
from lifelong.models.routed import Routed, classifier_backbone, install

Masks = list[tuple[torch.Tensor, torch.Tensor]]  # per hidden layer: (weight mask, bias mask)


def soft_threshold(w: torch.Tensor, lam: float) -> torch.Tensor:
    """Proximal step of λ‖w‖₁: sign(w)·max(|w| − λ, 0)."""
    return w.sign() * (w.abs() - lam).clamp_min(0)


def group_soft_threshold(rows: torch.Tensor, lam: float) -> torch.Tensor:
    """Proximal step of λ Σ_g ‖w_g‖₂ with one group per row: w_g · max(1 − λ/‖w_g‖, 0)."""
    norm = rows.norm(dim=1, keepdim=True)
    return rows * (1 - lam / norm.clamp_min(torch.finfo(rows.dtype).tiny)).clamp_min(0)


def select_units(weights: list[torch.Tensor], head: torch.Tensor) -> list[torch.Tensor]:
    """Units of each hidden layer connected to `head` through non-zero weights (breadth-first, top-down)."""
    selected = [(head != 0).any(0)]
    for w in reversed(weights[1:]):
        selected.insert(0, (w[selected[0]] != 0).any(0))
    return selected


def unit_drift(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """ℓ2 distance of each old unit's incoming weights (over the old inputs) from their old values."""
    return (new[: old.shape[0], : old.shape[1]] - old).norm(dim=1)


def masks_from_units(rows: list[torch.Tensor], cols: list[torch.Tensor]) -> Masks:
    """Weight mask rows[l] × cols[l] and bias mask rows[l] for each hidden layer."""
    return [(r[:, None] & c[None, :], r) for r, c in zip(rows, cols, strict=True)]


@STRATEGIES.register("den", aliases=("dynamically_expandable_networks", "dynamically-expandable"),
                     family="architecture", stores="units", memory="O(params + T * k)",
                     compute="High", forgetting="Low",
                     paper="Yoon et al. 2018, Lifelong Learning with Dynamically Expandable Networks")
class DEN(Plugin):
    """Selective retraining, expansion by k units, split/duplication and timestamps (MLP backbones)."""

    name = "den"
    restructures = routes_model = grows_parameters = True
    needs_task_labels = True
    settings = ("task",)

    def __init__(self, l1: float = 1e-5, l2: float = 1e-4, group: float = 1e-3, drift_reg: float = 0.5,
                 k: int = 10, loss_threshold: float = 0.01, split_threshold: float = 0.05,
                 phase_epochs: int = 1, phase_lr: float = 1e-3, batch_size: int = 256,
                 infer_task: bool = False) -> None:
        self.l1, self.l2 = check_positive("den: l1", l1), check_positive("den: l2", l2)
        self.group = check_positive("den: group", group)
        self.drift_reg = check_positive("den: drift_reg", drift_reg)
        self.k = check_count("den: k", k)
        self.tau = check_positive("den: loss_threshold", loss_threshold)
        self.sigma = check_positive("den: split_threshold", split_threshold)
        self.phase_epochs = check_count("den: phase_epochs", phase_epochs)
        self.phase_lr = check_positive("den: phase_lr", phase_lr, allow_zero=False)
        self.batch_size = check_count("den: batch_size", batch_size)
        self.infer_task = check_flag("den: infer_task", infer_task)
        if self.infer_task:
            self.needs_task_labels, self.settings = False, ("task", "domain", "class")
        self.slots = TaskSlots()
        self.widths: list[int] = []
        self.n_classes = 0
        self.sizes: list[int] = []
        self.router: Routed | None = None
        self._masks: Masks | None = None
        self._old: list[torch.Tensor] = []
        self._old_biases: list[torch.Tensor] = []
        self._selected: list[torch.Tensor] = []

    @property
    def net(self) -> ExpandableMLP:
        return self.router.net

    # -- building -------------------------------------------------------------------------------
    def _install(self, ctx: Context) -> None:
        layers = layer_list(classifier_backbone(ctx.model), ctx.stream.input_shape)
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        if any(not isinstance(m, (nn.Linear, nn.ReLU, nn.Flatten)) for m in layers) or \
                sum(isinstance(m, nn.ReLU) for m in layers) != len(linears):
            raise IncompatibleError("den expands fully connected ReLU layers: use the 'mlp' backbone "
                                    "(without dropout)")
        self.n_classes = ctx.stream.n_classes
        self.router = install(ctx.model, ExpandableMLP.from_linears(linears, self.n_classes), own_head=True)

    def _forward(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.router.route(self.slots.of(t))
        return ctx.forward(x, t)

    def _set_trainable(self) -> None:
        """Hidden layers trainable (gradients are masked per phase), heads of earlier tasks frozen."""
        self.net.weights.requires_grad_(True)
        self.net.biases.requires_grad_(True)
        for u, (w, b) in enumerate(zip(self.net.head_weights, self.net.head_biases, strict=True)):
            w.requires_grad_(u == len(self.slots) - 1)
            b.requires_grad_(u == len(self.slots) - 1)

    # -- the phases -----------------------------------------------------------------------------
    def _fit(self, ctx: Context, masks: Masks | None, groups: list[torch.Tensor] | None = None) -> None:
        """One own phase over the hidden layers (gradients limited to `masks`) and the current head."""
        net, slot = self.net, len(self.slots) - 1
        params = [*net.weights, *net.biases, net.head_weights[slot], net.head_biases[slot]]
        self._masks = masks
        fit(ctx, params, lambda x, t: self._forward(ctx, x, t), name=self.name, epochs=self.phase_epochs,
            batch_size=self.batch_size, lr=self.phase_lr, penalty=self._penalty,
            after_backward=self._mask_grads, after_step=lambda: self._proximal(masks, groups))

    def _penalty(self) -> torch.Tensor:
        """(l2/2)‖W‖² + (λ/2)‖W − W^{t−1}‖² over the trainable region (the pull only on old weights)."""
        total = torch.zeros((), device=self.net.weights[0].device)
        for layer, w in enumerate(self.net.weights):
            mask = None if self._masks is None else self._masks[layer][0]
            region = w if mask is None else w * mask
            total = total + self.l2 / 2 * region.square().sum()
            if self._old:
                rows, cols = self._old[layer].shape
                old = self._old[layer] if mask is None else self._old[layer] * mask[:rows, :cols]
                total = total + self.drift_reg / 2 * (region[:rows, :cols] - old).square().sum()
        return total

    def _mask_grads(self) -> None:
        if self._masks is None:
            return
        for w, b, (wm, bm) in zip(self.net.weights, self.net.biases, self._masks, strict=True):
            if w.grad is not None:
                w.grad.mul_(wm)
            if b.grad is not None:
                b.grad.mul_(bm)

    def _proximal(self, masks: Masks | None, groups: list[torch.Tensor] | None) -> None:
        """Proximal L1 on the trainable region and the current head, group sparsity on `groups` rows."""
        head = self.net.head_weights[len(self.slots) - 1]
        head.copy_(soft_threshold(head, self.l1))
        for layer, w in enumerate(self.net.weights):
            shrunk = soft_threshold(w, self.l1)
            w.copy_(shrunk if masks is None else torch.where(masks[layer][0], shrunk, w))
            if groups is not None and bool(groups[layer].any()):
                b, rows = self.net.biases[layer], groups[layer]
                both = group_soft_threshold(torch.cat([w[rows], b[rows, None]], 1), self.group)
                w[rows], b[rows] = both[:, :-1], both[:, -1]

    def _expand(self, ctx: Context, slot: int) -> None:
        """Add k units per hidden layer, train them with group sparsity, drop those that died."""
        net = self.net
        for layer in range(net.n_layers):
            w = net.weights[layer]
            fresh = reset_parameters(nn.Linear(w.shape[1], self.k), ctx.generator)
            n_next = net.weights[layer + 1].shape[0] if layer + 1 < net.n_layers else net.n_classes
            net.append_units(layer, fresh.weight.to(w.device), torch.zeros(self.k, device=w.device),
                             w.new_zeros(n_next, self.k), slot)
        new = [net.stamp(layer) == slot for layer in range(net.n_layers)]
        before = [torch.zeros(net.widths()[0], dtype=torch.bool, device=new[0].device), *new[:-1]]
        masks = [(r[:, None] | c[None, :], r) for r, c in zip(new, before, strict=True)]
        self._set_trainable()
        self._fit(ctx, masks, groups=new)
        for layer in range(net.n_layers):
            rows = net.stamp(layer) == slot
            dead = rows & (net.weights[layer].detach().abs().sum(1) + net.biases[layer].detach().abs() == 0)
            if bool(dead.any()):
                net.keep_units(layer, ~dead)

    def _split(self, ctx: Context, slot: int) -> None:
        """Duplicate drifted old units: the copy serves task `slot`, the original gets its old
        weights back and leaves the retraining that follows (it belongs to earlier tasks now)."""
        net = self.net
        rows = []
        for layer in range(net.n_layers):
            old_w, old_b = self._old[layer], self._old_biases[layer]
            drift = unit_drift(net.weights[layer].detach(), old_w)
            order = drift.argsort(descending=True)[: self.k]
            chosen = order[drift[order] > self.sigma]
            keep = torch.zeros_like(net.stamp(layer), dtype=torch.bool)
            keep[: self._selected[layer].shape[0]] = self._selected[layer]
            keep[chosen] = False
            rows.append(torch.cat([keep, torch.ones(chosen.numel(), dtype=torch.bool, device=keep.device)]))
            if not chosen.numel():
                continue
            with torch.no_grad():
                w, b = net.weights[layer].detach(), net.biases[layer].detach()
                if layer + 1 < net.n_layers:
                    out = net.weights[layer + 1].detach()[:, chosen]
                else:
                    out = net.head_weights[slot].detach()[:, chosen]
                    net.head_weights[slot][:, chosen] = 0
                copy_w, copy_b = w[chosen].clone(), b[chosen].clone()
                w[chosen] = 0
                w[chosen, : old_w.shape[1]] = old_w[chosen]
                b[chosen] = old_b[chosen]
            net.append_units(layer, copy_w, copy_b, out, slot)
        self._set_trainable()
        rows = [r | (net.stamp(layer) == slot) for layer, r in enumerate(rows)]
        inputs = torch.ones(net.widths()[0], dtype=torch.bool, device=rows[0].device)
        self._fit(ctx, masks_from_units(rows, [inputs, *rows[:-1]]))

    # -- hooks ----------------------------------------------------------------------------------
    def before_experience(self, ctx: Context) -> None:
        if self.router is None:
            self._install(ctx)
        slot = self.slots.add(ctx.experience.task, self.name)
        self.net.add_head(ctx.generator)
        self._set_trainable()
        self._old, self._masks = [], None
        if slot == 0:
            return
        net = self.net
        self._old = [w.detach().clone() for w in net.weights]
        self._old_biases = [b.detach().clone() for b in net.biases]
        frozen = [torch.zeros_like(w, dtype=torch.bool) for w in net.weights]
        self._fit(ctx, [(f, f[:, 0]) for f in frozen])
        self._selected = select_units([w.detach() for w in net.weights], net.head_weights[slot].detach())
        inputs = torch.ones(net.widths()[0], dtype=torch.bool, device=self._selected[0].device)
        self._masks = masks_from_units(self._selected, [inputs, *self._selected[:-1]])

    def loss_terms(self, ctx: Context, batch: Batch, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"l2": self._penalty()}

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        self.router.route(self.slots.of(batch.t))
        return batch

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        self._mask_grads()

    def after_step(self, ctx: Context, batch: Batch) -> None:
        with torch.no_grad():
            self._proximal(self._masks, None)

    def after_experience(self, ctx: Context) -> None:
        slot = len(self.slots) - 1
        if slot > 0:
            if mean_loss(ctx, lambda x, t: self._forward(ctx, x, t)) > self.tau:
                self._expand(ctx, slot)
            self._split(ctx, slot)
        self.net.requires_grad_(False)
        self.widths = self.net.widths()
        self.sizes.append(sum(p.numel() for p in self.net.parameters()))
        self._old, self._masks = [], None

    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        return route_or_infer(ctx, self.router, self.slots, self.infer_task, x, t)

    def parameter_report(self) -> dict[str, Any]:
        """Parameters in total, added per task, and the hidden widths."""
        added = [b - a for a, b in pairwise([0, *self.sizes])]
        return {"parameters": self.sizes[-1] if self.sizes else 0, "added": added,
                "widths": list(self.widths)}

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.slots.labels), "widths": list(self.widths),
                "n_classes": self.n_classes, "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slots = TaskSlots(state["tasks"])
        self.widths, self.n_classes = list(state["widths"]), int(state["n_classes"])
        self.sizes = list(state["sizes"])

    def restore(self, model: nn.Module) -> None:
        if not self.slots.labels:
            return
        net = ExpandableMLP(self.widths, self.n_classes).to(device_of(model))
        generator = torch.Generator().manual_seed(0)  # placeholder values: the checkpoint overwrites them
        for _ in self.slots.labels:
            net.add_head(generator)
        self.router = install(model, net.requires_grad_(False), own_head=True)
