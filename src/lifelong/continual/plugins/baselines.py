"""Baselines: naive fine-tuning, cumulative retraining, and the joint (offline) upper bound."""

from __future__ import annotations

import torch

from lifelong.continual.plugin import Context, Plugin, TrainData
from lifelong.core.registries import STRATEGIES


def _tensors(ctx: Context, indices: range) -> TrainData:
    exps = [ctx.stream[i] for i in indices]
    return TrainData(torch.cat([e.train_x for e in exps]), torch.cat([e.train_y for e in exps]),
                     torch.cat([e.train_t() for e in exps]))


@STRATEGIES.register("naive", aliases=("finetune", "fine-tuning", "sgd"), family="baseline",
                     stores="nothing", memory="none", compute="low", forgetting="Severe",
                     paper="fine-tuning baseline (seed 37.13)")
class Naive(Plugin):
    """Fine-tuning: train on each experience in turn with nothing against forgetting."""

    name = "naive"


@STRATEGIES.register("cumulative", family="baseline", stores="all data", memory="O(stream)",
                     compute="O(T·data)", paper="cumulative retraining baseline (Lomonaco et al. 2021)")
class Cumulative(Plugin):
    """Retrain on the union of every experience seen so far (an upper bound that stores all data)."""

    name = "cumulative"

    def train_data(self, ctx: Context, data: TrainData) -> TrainData:
        return _tensors(ctx, range(ctx.index + 1))


@STRATEGIES.register("joint", aliases=("offline",), family="baseline", stores="all data",
                     memory="O(stream)", compute="O(data)", paper="joint (offline) training upper bound")
class Joint(Plugin):
    """Train once on the whole stream at the first experience, then nothing (offline upper bound).

    Every row of the accuracy matrix after the first is therefore the joint model's accuracy.
    """

    name = "joint"

    def train_data(self, ctx: Context, data: TrainData) -> TrainData:
        if ctx.index == 0:
            return _tensors(ctx, range(len(ctx.stream)))
        return TrainData(data.x[:0], data.y[:0], data.t[:0])
