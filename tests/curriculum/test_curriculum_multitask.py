"""A curriculum sampler orders the multi-task engine's epochs (shared-input tasks)."""

import torch
from torch import nn

from lifelong.curriculum import CurriculumSampler, Linear
from lifelong.data.multitask import TaskSpec, shared_inputs
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.weighting import build_weighting


def test_multitask_epochs_visit_only_the_paced_easiest_examples():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 4, generator=g)
    ys = {"a": (x[:, 0] > 0).long(), "b": (x[:, 1] > 0).long()}
    data = shared_inputs("toy", (TaskSpec("a", "ce", 2), TaskSpec("b", "ce", 2)), x, ys, x[:10],
                         {k: v[:10] for k, v in ys.items()})
    model = build_architecture("hps", data, lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU()))
    trainer = MultiTaskTrainer(model, build_weighting("uniform", 2), data,
                               TrainConfig(epochs=3, batch_size=10, lr=0.1, optimizer="sgd"),
                               torch.Generator().manual_seed(0))
    difficulty = torch.arange(100.0)  # example i has rank i: the easiest are the lowest indices
    sampler = CurriculumSampler(difficulty, Linear(c0=0.2), total=2,
                                generator=torch.Generator().manual_seed(0))
    seen: list[list[int]] = [[] for _ in range(3)]

    def order(tr):
        sampler.set_epoch(tr.epoch)
        return sampler.indices()

    trainer.fit(before_step=lambda tr, idx: seen[tr.epoch].extend(idx.tolist()), epoch_order=order)
    # linear pacing c(t) = 0.2 + 0.8·t/2: 20, 60 then 100 easiest examples, each once per epoch
    assert [sorted(s) for s in seen] == [list(range(20)), list(range(60)), list(range(100))]
