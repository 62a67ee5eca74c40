"""Dark Experience Replay, DER and DER++ (Buzzega et al. 2020): replay inputs with their logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lifelong.continual.plugin import Batch, Context
from lifelong.continual.plugins.replay import Replay, append_term, current_rows, replay_rows
from lifelong.core.checks import check_positive
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.models.layer_list import couples_rows

Rows = dict[str, Tensor]


@STRATEGIES.register("der", family="replay", stores="buffer", memory="O(buffer)", compute="Low",
                     forgetting="Low",
                     paper="Buzzega et al. 2020, Dark Experience for General Continual Learning")
class DER(Replay):
    """DER (Buzzega et al. 2020): a reservoir of inputs with the logits they got when stored.

    Loss: CE(current batch) + α·MSE(f(x_buf), z_buf) on a memory batch, where z_buf are the
    model's outputs for x_buf in the step that stored them (taken from the training forward pass,
    no extra forward). Replayed rows take no part in the cross-entropy. Default α = 0.3, the
    paper's value for Seq-CIFAR-10 with a 500-sample buffer (its Seq-MNIST value is 1.0).
    Needs a fixed-width output layer (head `single` or `multi`).

    Memory batches join the training batch for one forward; when the model has BatchNorm in
    training mode, where a row's output depends on its batch, each memory batch is forwarded on
    its own instead, as in the paper's Algorithm 1, so z_buf and f(x_buf) do not depend on what
    they were batched with.
    """

    name = "der"
    needs_fixed_width = True

    def __init__(self, buffer_size: int = 500, alpha: float = 0.3,
                 replay_batch_size: int | None = None) -> None:
        super().__init__(buffer_size, replay_batch_size)
        self.alpha, self.beta = check_positive(f"{self.name}: alpha", alpha), 0.0
        self._stored_logits: Tensor | None = None
        self._alone: dict[str, Rows] = {}  # memory batches to forward on their own

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        if not len(self.buffer):
            return batch
        n = replay_rows(batch, self.replay_batch_size)
        samples = {part: self.buffer.sample(n, ctx.generator) for part in (("mse", "ce") if self.beta else ("mse",))}
        if couples_rows(ctx.model):
            self._alone = samples
            return batch
        for part, s in samples.items():
            rows = torch.arange(len(batch), len(batch) + len(s["y"]), device=batch.y.device)
            batch = append_term(batch, s["x"], s["y"], s["t"], 0.0,
                                **{f"der.{part}_rows": rows, f"der.{part}_logits": s["logits"]})
        return batch

    def memory_outputs(self, ctx: Context, batch: Batch, outputs: Tensor) -> dict[str, tuple[Tensor, Rows]]:
        """Per memory batch ('mse', 'ce'): the model's outputs on it and its rows (y, t, logits)."""
        if self._alone:
            alone, self._alone = self._alone, {}
            return {part: (ctx.forward(s["x"], s["t"]), s) for part, s in alone.items()}
        return {part: (outputs[rows], {"y": batch.y[rows], "t": batch.t[rows],
                                       "logits": batch.extra.get(f"der.{part}_logits")})
                for part in ("mse", "ce") if (rows := batch.extra.get(f"der.{part}_rows")) is not None}

    def loss_terms(self, ctx: Context, batch: Batch, outputs: Tensor) -> dict[str, Tensor]:
        self._stored_logits = outputs[batch.current].detach()
        memory = self.memory_outputs(ctx, batch, outputs)
        terms = {}
        if "mse" in memory:
            out, rows = memory["mse"]
            if rows["logits"].shape[1] != out.shape[1]:
                raise IncompatibleError(
                    f"{self.name}: the buffer holds logits of width {rows['logits'].shape[1]} but the "
                    f"model now outputs {out.shape[1]}; use a fixed-width head ('single' "
                    "or 'multi')")
            terms["mse"] = self.alpha * F.mse_loss(out, rows["logits"])
        if "ce" in memory:
            out, rows = memory["ce"]
            terms["ce_buffer"] = self.beta * F.cross_entropy(ctx.mask(out, rows["t"]), rows["y"])
        return terms

    def after_step(self, ctx: Context, batch: Batch) -> None:
        self.buffer.add({**current_rows(batch), "logits": self._stored_logits}, ctx.generator)
        self._stored_logits = None


@STRATEGIES.register("der++", aliases=("derpp",), family="replay", stores="buffer",
                     memory="O(buffer)", compute="Low", forgetting="Very Low",
                     paper="Buzzega et al. 2020, Dark Experience for General Continual Learning")
class DERpp(DER):
    """DER++ (Buzzega et al. 2020): DER plus β·CE on the labels of a second memory batch.

    Defaults α = 0.2, β = 0.5: the paper's values for Seq-CIFAR-10 with a 500-sample buffer
    (Seq-MNIST: α = 1.0, β = 0.5).
    """

    name = "der++"

    def __init__(self, buffer_size: int = 500, alpha: float = 0.2, beta: float = 0.5,
                 replay_batch_size: int | None = None) -> None:
        super().__init__(buffer_size, alpha, replay_batch_size)
        self.beta = check_positive(f"{self.name}: beta", beta, allow_zero=False)
