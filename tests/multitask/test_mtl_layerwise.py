"""The trainer's layerwise Jacobian: taken where the model allows it, step-for-step equal to the
vmapped one."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import (
    NonFiniteLossError,
)
from lifelong.data.multitask import load_benchmark
from lifelong.grad import StitchedColumns
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.architectures.ple_levels import PLELevels
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.presets import build_default
from lifelong.multitask.weighting import build_weighting


def steps_alike(mtl, fast: MultiTaskTrainer, slow: MultiTaskTrainer) -> None:
    """Three steps of `fast` by its layerwise Jacobian (every step, and every part of a sampled
    aggregator's batch) give the losses, parameters and conflict statistics of `slow`, which a hook on
    its model sends to the batched `jacobian` (hooks must run)."""
    slow.model.register_forward_pre_hook(lambda module, args: None)
    calls = []
    layerwise = fast.layerwise.jacobian
    fast.layerwise.jacobian = lambda *args: calls.append(1) or layerwise(*args)
    for start in (0, 16, 32):
        torch.testing.assert_close(fast.train_step(torch.arange(start, start + 16)),
                                   slow.train_step(torch.arange(start, start + 16)))
    assert len(calls) == 3 * getattr(fast.weighting, "samples", 1)
    torch.testing.assert_close(mtl.flat(fast.model.parameters()), mtl.flat(slow.model.parameters()))
    torch.testing.assert_close(fast.monitor.cos_sum, slow.monitor.cos_sum)


def twins(data, arch: str, expert, weighting: str, **arch_args) -> list[MultiTaskTrainer]:
    """Two trainers of `arch` on the `expert` factory with `weighting`, alike to the last seed."""
    config = TrainConfig(epochs=1, batch_size=16, lr=0.1, optimizer="sgd", conflict_every=1)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_architecture(arch, data, expert, **arch_args)
        runs.append(MultiTaskTrainer(model, build_weighting(weighting, 3), data, config,
                                     torch.Generator().manual_seed(0)))
    return runs


@pytest.mark.parametrize(("name", "arch"), [("pcgrad", "hps"), ("mgda", "hps"), ("nash_mtl", "hps"), ("modo", "hps"),
                                            ("pcgrad", "mmoe"), ("upgrad", "mmoe"), ("cagrad", "cgc")])
def test_mlp_trunks_step_by_the_layerwise_jacobian_as_by_the_batched_one(mtl, name, arch):
    """HPS on a Linear/ReLU trunk, and MMoE and CGC on Linear/ReLU experts, take the layerwise
    Jacobian, stepping as the batched one (`steps_alike`) with the same gate distributions."""
    data = mtl.toy_shared()
    fast, slow = (mtl.trainer(data, name, arch=arch, conflict_every=1) for _ in range(2))
    expected = {"hps": lambda m: [m.backbone], "mmoe": lambda m: list(m.experts),
                "cgc": lambda m: list(m.shared_experts[0])}[arch](fast.model)
    assert fast.layerwise is not None and fast.layerwise.trunks == expected
    steps_alike(mtl, fast, slow)
    if arch in ("mmoe", "cgc"):
        torch.testing.assert_close(fast.model.gate_weights, slow.model.gate_weights)


@pytest.mark.parametrize("name", ["pcgrad", "mgda", "modo"])
def test_cross_stitch_steps_by_the_stitched_jacobian_as_by_the_batched_one(mtl, name):
    """Cross-stitch on two-stage Linear/ReLU columns takes the stitched Jacobian, stepping as the batched
    one (`steps_alike`) with the same units."""
    fast, slow = twins(mtl.toy_shared(), "cross_stitch", lambda: torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU()), name)
    assert isinstance(fast.layerwise, StitchedColumns) and len(fast.layerwise.stages) == 2
    steps_alike(mtl, fast, slow)
    torch.testing.assert_close(fast.model.stitch_matrices(), slow.model.stitch_matrices())


@pytest.mark.parametrize(("levels", "name"), [(2, "pcgrad"), (3, "mgda")])
def test_ple_above_one_level_steps_by_its_levels_jacobian_as_by_the_batched_one(mtl, levels, name):
    """PLE of two and three levels on Linear/ReLU experts takes the levels' Jacobian, stepping as the
    batched one (`steps_alike`) with the same gate distributions."""
    fast, slow = twins(mtl.toy_shared(), "ple", lambda: mtl.mlp(6, 6), name, levels=levels)
    assert isinstance(fast.layerwise, PLELevels)
    steps_alike(mtl, fast, slow)
    torch.testing.assert_close(fast.model.gate_weights, slow.model.gate_weights)


def test_a_trunk_with_batch_and_layer_norms_steps_layerwise_as_batched(mtl):
    """HPS on a Linear/BatchNorm/ReLU/LayerNorm trunk takes the layerwise Jacobian, stepping as the
    batched one (`steps_alike`) with the same running statistics."""
    fast, slow = twins(mtl.toy_shared(), "hps", lambda: torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)),
        "upgrad")
    assert fast.layerwise is not None
    steps_alike(mtl, fast, slow)
    torch.testing.assert_close(fast.model.backbone[1].running_var, slow.model.backbone[1].running_var)
    assert int(fast.model.backbone[1].num_batches_tracked) == 3


def test_the_layerwise_path_is_taken_only_where_it_applies_and_still_checks_the_losses(mtl):
    data = mtl.toy_shared()
    normed = build_architecture("ple", data, lambda: torch.nn.Sequential(torch.nn.Linear(6, 6),
                                                                         torch.nn.GroupNorm(2, 6)))
    config = TrainConfig(epochs=1, batch_size=16, lr=0.1, optimizer="sgd")
    assert MultiTaskTrainer(normed, build_weighting("pcgrad", 3), data, config, torch.Generator()).layerwise is None
    for padding_mode, layerwise in (("zeros", True), ("reflect", False)):
        torch.manual_seed(0)
        conv = build_architecture("hps", data, lambda mode=padding_mode: torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, 6)), torch.nn.Conv1d(1, 2, 3, padding=1, padding_mode=mode), torch.nn.Flatten()))
        tr = MultiTaskTrainer(conv, build_weighting("pcgrad", 3), data, config, torch.Generator())
        assert (tr.layerwise is not None) == layerwise
    diverged = mtl.trainer(data, "pcgrad")
    diverged.train["c"][1][:8] = float("nan")
    with pytest.raises(NonFiniteLossError, match="'c'"):
        diverged.train_step(torch.arange(8))


def test_dense_tasks_on_the_default_convolution_trunk_step_layerwise_as_batched(mtl):
    """Scenes' segmentation, depth and count on the default convolution trunk: the layerwise
    Jacobian's two steps equal the vmapped one's (a hook on the model selects it)."""
    data = load_benchmark("scenes", n_train=16, n_test=8, size=8)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2)
    runs = []
    for hooked in (False, True):
        torch.manual_seed(0)
        tr = MultiTaskTrainer(build_default("hps", data, width=8), build_weighting("mgda", 3), data, config,
                              torch.Generator().manual_seed(0))
        assert tr.layerwise is not None
        if hooked:
            tr.model.register_forward_hook(lambda *args: None)
        losses = torch.stack([tr.train_step(torch.arange(i, i + 8)) for i in (0, 8)])
        runs.append((losses, mtl.flat(tr.model.parameters())))
    torch.testing.assert_close(runs[0], runs[1])
