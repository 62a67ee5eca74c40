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
    """

    name = "der"

    def __init__(self, buffer_size: int = 500, alpha: float = 0.3,
                 replay_batch_size: int | None = None) -> None:
        super().__init__(buffer_size, replay_batch_size)
        self.alpha, self.beta = check_positive(f"{self.name}: alpha", alpha), 0.0
        self._stored_logits: Tensor | None = None

    def extend_batch(self, ctx: Context, batch: Batch) -> Batch:
        if not len(self.buffer):
            return batch
        n = replay_rows(batch, self.replay_batch_size)
        for part in ("mse", "ce") if self.beta else ("mse",):
            s = self.buffer.sample(n, ctx.generator)
            rows = torch.arange(len(batch), len(batch) + len(s["y"]), device=batch.y.device)
            batch = append_term(batch, s["x"], s["y"], s["t"], 0.0,
                                **{f"der.{part}_rows": rows, f"der.{part}_logits": s["logits"]})
        return batch

    def loss_terms(self, ctx: Context, batch: Batch, outputs: Tensor) -> dict[str, Tensor]:
        self._stored_logits = outputs[batch.current].detach()
        terms = {}
        if "der.mse_rows" in batch.extra:
            rows, target = batch.extra["der.mse_rows"], batch.extra["der.mse_logits"]
            if target.shape[1] != outputs.shape[1]:
                raise IncompatibleError(
                    f"{self.name}: the buffer holds logits of width {target.shape[1]} but the "
                    f"model now outputs {outputs.shape[1]}; use a fixed-width head ('single' "
                    "or 'multi')")
            terms["mse"] = self.alpha * F.mse_loss(outputs[rows], target)
        if "der.ce_rows" in batch.extra:
            rows = batch.extra["der.ce_rows"]
            logits = ctx.mask(outputs[rows], batch.t[rows])
            terms["ce_buffer"] = self.beta * F.cross_entropy(logits, batch.y[rows])
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
