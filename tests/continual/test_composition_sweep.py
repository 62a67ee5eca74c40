"""Every pair of strategies, on both heads: it trains, or the engine refuses it before training with
a reason; it never fails halfway (the sweep that found hat+ewc and si+adapters failing at the end of
their first experience)."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from lifelong.continual.engine import Engine
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.data.scenarios import build_benchmark
from lifelong.models import build_model

SKIP = {"naive", "joint", "lora"}  # naive adds nothing; joint trains once at the end; lora needs peft
NAMES = [n for n in STRATEGIES.names() if n not in SKIP]
PAIRS = list(itertools.combinations(NAMES, 2))
SMALL = {"replay": {"buffer_size": 40}, "der": {"buffer_size": 40}, "der++": {"buffer_size": 40},
         "gem": {"patterns_per_experience": 10}, "agem": {"patterns_per_experience": 10},
         "icarl": {"memory_size": 40}, "packnet": {"retrain_epochs": 1}, "generative": {"generator_steps": 20}}


@functools.cache
def stream(setting: str):
    return build_benchmark("split-digits", setting, limit=(300, 100))[:2]


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
@pytest.mark.parametrize("head", ["single", "multi"])
def test_a_pair_trains_or_is_refused_before_training(a, b, head):
    setting = "task" if head == "multi" else "class"
    data = stream(setting)
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.n_classes, data.task_classes(), head=head, hidden=(16,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    try:
        plugins = build_strategy(f"{a}+{b}", {n: SMALL[n] for n in (a, b) if n in SMALL})
        engine = Engine(model, plugins, epochs=1, batch_size=64, generator=torch.Generator().manual_seed(0))
        engine.check(data)
    except IncompatibleError:
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
        return
    matrix = engine.run(data)
    assert len(matrix) == 3 and all(0 <= v <= 1 for row in matrix for v in row)
