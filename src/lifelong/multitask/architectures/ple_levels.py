"""PLE's task Jacobian level by level (Tang et al., 2020), for two levels or more.

The experts of every level run forward once without autograd (each keeps a `layerwise` tape); the
gates and mixtures between levels run with autograd on leaf copies of the experts' outputs and of
the level's inputs. Each task's loss reads its own copies of what the level below the last gives
it (`PLE.layerwise_output`: its private gates, last-level experts and head run there), and one
backward through those gives each task's cotangents. From there every task's cotangents go down
together ([k, n, ...]): through the experts by `layerwise.backward`, through the gates and mixtures
of a level by one vmapped backward of that small graph. The experts, where the work is, skip
vmap's layout copies and batching overhead; the result equals `jacobian`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from lifelong.core.errors import IncompatibleError
from lifelong.grad.layerwise import backward, forward, hook_free, leaf_gradients, write_private

if TYPE_CHECKING:
    from lifelong.multitask.architectures.ple import PLE


@dataclass
class _Level:
    """One level below the last, run forward: its experts' outputs and tapes, and its gates and
    mixtures as an autograd graph on leaf copies of those outputs and of the level's inputs."""

    index: int
    outputs: tuple[Tensor, ...]
    tapes: tuple
    leaves: list[Tensor]
    task_inputs: list[Tensor]
    shared_input: Tensor
    mixtures: list[Tensor]  # each task's next input (none at the level below the last)
    shared_mixture: Tensor


class PLELevels:
    """A PLE model of two levels or more whose lower experts and last-level shared experts the
    layerwise backward takes; computes its task Jacobian over `shared_parameters()`."""

    def __init__(self, model: PLE) -> None:
        if model.levels < 2:
            raise IncompatibleError("PLE levels: one level is CGC; use MultiTaskModel.layerwise (LayerwiseTrunks)")
        self.model = model
        names = model.task_names
        # level j's experts in one list: each task's own, then the shared (the order of the shared mixture)
        self.experts = [[*(e for t in names for e in model.task_experts[j][t]), *model.shared_experts[j]]
                        for j in range(model.levels - 1)]
        self.params = model.shared_parameters()
        self.columns, self.n_shared = {}, 0
        for p in self.params:
            self.columns[id(p)] = self.n_shared
            self.n_shared += p.numel()
        self.modules = [m for level in (*self.experts, model.shared_experts[-1]) for e in level for m in (e, *e)]
        self.modules += [*model.task_gates.modules(), *model.shared_gates.modules()]

    def _rows(self, jac: Tensor, module: nn.Module) -> Tensor:
        """J's columns of a module's parameters (consecutive in `shared_parameters()`)."""
        params = list(module.parameters())
        start = self.columns[id(params[0])]
        return jac[:, start:start + sum(p.numel() for p in params)]

    def jacobian(self, x: Tensor, task_losses: Callable[[list[list[Tensor]]], Tensor],
                 private: Sequence[Sequence[Tensor]]) -> tuple[Tensor, Tensor]:
        """(losses (k,), J (k × P)): `task_losses` maps each task's list of copies (see
        `PLE.layerwise_output`) to the losses, `private[t]` are task t's own parameters. J's columns
        are `self.params` then each task's private parameters in turn, as
        `jacobian(losses, [*self.params, *private])`."""
        if not hook_free(self.modules):
            raise IncompatibleError("PLE levels: a hook was registered on an expert or gate since it was checked; "
                                    "use lifelong.grad.jacobian, which runs hooks")
        model, k, below = self.model, len(private), self.model.levels - 2
        model.gate_weights = {}
        inputs, shared_input, levels = [x] * k, x, []
        for j in range(below + 1):
            levels.append(self._level_forward(j, inputs, shared_input))
            inputs = [h.detach() for h in levels[-1].mixtures] if j < below else inputs
            shared_input = levels[-1].shared_mixture.detach()
        with torch.no_grad():
            top, top_tapes = zip(*(forward(e, shared_input) for e in model.shared_experts[-1]), strict=True)
        n_own = len(model.task_experts[below][model.task_names[0]])
        lower = levels[below].outputs
        copies = [[*(z.detach().requires_grad_(True) for z in (*lower[t * n_own:(t + 1) * n_own], *lower[k * n_own:],
                                                                *top)),
                   *([inputs[t].detach().requires_grad_(True)] if below > 0 else [])] for t in range(k)]
        losses, leaf_grads, own_grads = leaf_gradients(task_losses, copies, private)
        jac = torch.empty(k, self.n_shared + sum(g.numel() for g in own_grads), dtype=top[0].dtype, device=x.device)
        width = len(copies[0])

        def from_copies(i: int, like: Tensor, tasks: Sequence[int]) -> Tensor:
            """The cotangents (k, ...) of copy i from the losses of `tasks` (zero for the others)."""
            out = like.new_zeros(k, *like.shape)
            for t in tasks:
                if leaf_grads[t * width + i] is not None:
                    out[t] = leaf_grads[t * width + i]
            return out

        first_top = len(lower) - k * n_own + n_own
        shared_cot = sum(backward(tape, from_copies(first_top + i, z, range(k)), self._rows(jac, e), push=True)
                         for i, (e, tape, z) in enumerate(zip(model.shared_experts[-1], top_tapes, top, strict=True)))
        copied = [*(from_copies(i % n_own, z, [i // n_own]) for i, z in enumerate(lower[:k * n_own])),
                  *(from_copies(n_own + i, z, range(k)) for i, z in enumerate(lower[k * n_own:]))]
        copied_inputs = [from_copies(width - 1, inputs[t], [t]) for t in range(k)] if below > 0 else [0] * k
        mixture_cots: list[Tensor] = []
        for j in range(below, -1, -1):
            out_cots, task_in, shared_in = self._glue_backward(levels[j], mixture_cots, shared_cot, jac)
            if j == below:
                out_cots = [a + b for a, b in zip(out_cots, copied, strict=True)]
                task_in = [a + b for a, b in zip(task_in, copied_inputs, strict=True)] if j > 0 else task_in
            pushed = [backward(tape, cot, self._rows(jac, e), push=j > 0)
                      for e, tape, cot in zip(self.experts[j], levels[j].tapes, out_cots, strict=True)]
            if j > 0:
                n_j = len(model.task_experts[j][model.task_names[0]])
                mixture_cots = [sum(pushed[t * n_j:(t + 1) * n_j], task_in[t]) for t in range(k)]
                shared_cot = sum(pushed[k * n_j:], shared_in)
        write_private(jac, self.n_shared, private, own_grads)
        return losses, jac

    def _level_forward(self, j: int, inputs: list[Tensor], shared_input: Tensor) -> _Level:
        """Level j: its experts without autograd (tapes kept), then its gates and mixtures with
        autograd on leaf copies of the experts' outputs and of the level's inputs (above level 0)."""
        model, names = self.model, self.model.task_names
        readers = [inputs[t] for t in range(len(names)) for _ in model.task_experts[j][names[t]]]
        readers += [shared_input] * len(model.shared_experts[j])
        with torch.no_grad():
            outputs, tapes = zip(*(forward(e, h) for e, h in zip(self.experts[j], readers, strict=True)), strict=True)
        leaves = [z.detach().requires_grad_(True) for z in outputs]
        if j > 0:
            inputs = [h.detach().requires_grad_(True) for h in inputs]
            shared_input = shared_input.detach().requires_grad_(True)
        n_own = len(model.task_experts[j][names[0]])
        common = leaves[len(names) * n_own:]
        with torch.enable_grad():
            mixtures = [model.task_mixture(j, t, inputs[i], torch.stack([*leaves[i * n_own:(i + 1) * n_own], *common],
                                                                         dim=1))
                        for i, t in enumerate(names)] if j < model.levels - 2 else []
            shared_mixture = model.shared_mixture(j, shared_input, leaves)
        return _Level(j, outputs, tapes, leaves, inputs, shared_input, mixtures, shared_mixture)

    def _glue_backward(self, level: _Level, mixture_cots: list[Tensor], shared_cot: Tensor,
                       jac: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        """One vmapped backward of a level's gates and mixtures from the k tasks' cotangents of its task
        mixtures (none at the level below the last) and of its shared mixture: writes the gates' rows
        of J; returns the cotangents (k, ...) of the level's expert outputs and, above level 0, of its
        task inputs and its shared input."""
        j, model, k = level.index, self.model, len(shared_cot)
        gates = [*(model.task_gates[j][t] for t in model.task_names if level.mixtures), model.shared_gates[j]]
        params = [p for g in gates for p in g.parameters()]
        inputs = [*level.leaves, *((*level.task_inputs, level.shared_input) if j > 0 else ())]
        grads = torch.autograd.grad([*level.mixtures, level.shared_mixture], [*inputs, *params],
                                    grad_outputs=[*mixture_cots, shared_cot], is_grads_batched=True, allow_unused=True)
        grads = [v.new_zeros(k, *v.shape) if g is None else g for g, v in zip(grads, [*inputs, *params], strict=True)]
        gate_grads = iter(grads[len(inputs):])
        for g in gates:
            self._rows(jac, g).copy_(torch.cat([next(gate_grads).reshape(k, -1) for _ in g.parameters()], dim=1))
        n = len(level.leaves)
        return grads[:n], grads[n:n + len(model.task_names)], grads[len(inputs) - 1] if j > 0 else None
