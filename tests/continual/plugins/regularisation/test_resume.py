"""Regularisation state lives in state_dict (tensors only): runs resume bit-exactly through run()."""

import json

import pytest
import torch

from lifelong.continual.engine import Engine
from lifelong.continual.importance import grow_flat
from lifelong.continual.plugin import Plugin
from lifelong.continual.run import run
from lifelong.continual.strategies import build_strategy
from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.config import RunConfig
from lifelong.core.seeding import seed_everything
from lifelong.data.scenarios import permuted, split
from lifelong.data.sources.base import subsample
from lifelong.models import build_model

CASES = {"ewc": {"samples": 64}, "online_ewc": {"samples": 64, "gamma": 0.9}, "si": {}, "mas": {"samples": 64},
         "lwf": {}, "ewc+lwf": {"ewc": {"samples": 64}, "lwf": {}}}


@pytest.fixture(scope="module")
def stream(fashion):
    return permuted(subsample(fashion, 300, 200), "domain", n_experiences=3)


def _config(out, strategy):
    return RunConfig(benchmark="permuted-fashion-mnist", scenario="domain", strategy=strategy,
                     strategy_args=CASES[strategy], limit_train=300, limit_test=200, epochs=1,
                     batch_size=32, lr=3e-3, out=str(out), name="r", model_args={"hidden": [32]})


def _matrix(folder):
    return json.loads((folder / "r" / "results.json").read_text())["accuracy_matrix"]


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_interrupted_run_resumes_bit_exactly(tmp_path, interrupted_run, stream, strategy):
    run(_config(tmp_path / "full", strategy), stream=stream)
    interrupted_run(_config(tmp_path / "cut", strategy), stream=stream)
    state, _ = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")  # weights_only=True
    assert state["next_experience"] == 2
    run(_config(tmp_path / "cut", strategy), stream=stream, resume=True)
    assert _matrix(tmp_path / "cut") == _matrix(tmp_path / "full")


@pytest.mark.parametrize("strategy", ["ewc", "online_ewc", "si", "mas"])
def test_negative_control_dropping_the_plugin_state_changes_the_result(tmp_path, interrupted_run, stream,
                                                                      strategy):
    run(_config(tmp_path / "full", strategy), stream=stream)
    interrupted_run(_config(tmp_path / "cut", strategy), stream=stream)
    ckpt = tmp_path / "cut" / "r" / "checkpoint.pt"
    state, config = load_checkpoint(ckpt)
    fresh = build_strategy(strategy, CASES[strategy])
    assert any(isinstance(v, torch.Tensor) for v in state["plugins"][0].values())
    state["plugins"] = [p.state_dict() for p in fresh]
    save_checkpoint(ckpt, state, config)
    run(_config(tmp_path / "cut", strategy), stream=stream, resume=True)
    assert _matrix(tmp_path / "cut") != _matrix(tmp_path / "full")


class GrownWeight(Plugin):
    """Placed after a strategy: its importance Ω at the first step of the second experience, when
    it holds only the first task's importance, re-laid for the grown head."""

    name = "grown_weight"

    def __init__(self, plugin):
        self.plugin, self.weight = plugin, None

    def loss_terms(self, ctx, batch, outputs):
        if ctx.index == 1 and self.weight is None:
            self.weight = self.plugin.weight.clone()
        return {}


@pytest.mark.parametrize("strategy", ["ewc", "online_ewc", "si", "mas"])
def test_state_follows_a_growing_classifier(fashion, strategy):
    """Class-IL with a growing head: the first task's importance is zero on units added later."""
    stream = split(subsample(fashion, 600, 200), "class")[:2]
    generator = seed_everything(0, deterministic=True)
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(),
                        head="incremental", hidden=(16,))
    plugins = build_strategy(strategy, {k: v for k, v in CASES[strategy].items()})
    spy = GrownWeight(plugins[0])
    engine = Engine(model, [*plugins, spy], epochs=1, batch_size=64, generator=generator)
    engine.run(stream[:1])
    first, first_shapes = plugins[0].weight.clone(), [list(p.shape) for p in model.parameters()]
    engine.run(stream)
    plugin = plugins[0]
    shapes = [list(p.shape) for p in model.parameters()]
    assert plugin.shapes == shapes and model.head.weight.shape[0] == 4
    grown_first = plugin.fishers[0] if strategy == "ewc" else None
    if grown_first is not None:
        head = grown_first.split([p.numel() for p in model.parameters()])[-2].reshape(4, 16)
        assert not head[2:].any() and head[:2].any()
    assert plugin.weight.numel() == sum(p.numel() for p in model.parameters()) > first.numel()
    # every strategy: the first task's Ω, grown, keeps its entries in place and is zero on the new units
    *_, head_weight, head_bias = spy.weight.split([p.numel() for p in model.parameters()])
    assert not head_weight.reshape(4, 16)[2:].any() and not head_bias[2:].any()
    assert head_weight.reshape(4, 16)[:2].any()
    assert torch.equal(spy.weight, grow_flat(first, first_shapes, shapes))
