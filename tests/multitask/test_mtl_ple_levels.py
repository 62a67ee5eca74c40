"""PLE above one level takes its task Jacobian level by level (`PLELevels`): equal to autograd's
batched one for any number of levels, experts per task and shared experts, with the gate
distributions a forward records (the trainer's steps: test_mtl_layerwise)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import IncompatibleError
from lifelong.grad import jacobian
from lifelong.multitask.architectures.ple import PLE
from lifelong.multitask.architectures.ple_levels import PLELevels


def ple(levels: int, n_specific: int, n_shared: int, tasks: int, expert=None, upper=None,
        width: int = 6, dtype: torch.dtype = torch.float32) -> PLE:
    torch.manual_seed(0)
    heads = {f"t{i}": nn.Linear(width, 3) for i in range(tasks)}
    expert = expert or (lambda: nn.Sequential(nn.Linear(5, 5), nn.Tanh()))
    return PLE(expert, heads, (5,), levels=levels, n_specific=n_specific, n_shared=n_shared,
               upper_expert=upper).to(dtype)


def both_ways(model: PLE, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """((losses, J), gate distributions) by the levels and by `jacobian` on a forward, from the same
    random state (dropout masks)."""
    private = [model.own_parameters(t) for t in model.task_names]

    def losses(outputs):
        return torch.stack([F.cross_entropy(model.layerwise_output(t, x, own), y)
                            for t, own in zip(model.task_names, outputs, strict=True)])

    torch.manual_seed(7)
    got = model.layerwise().jacobian(x, losses, private)
    gates = dict(model.gate_weights)
    torch.manual_seed(7)
    out = model(x)
    ref = torch.stack([F.cross_entropy(out[t], y) for t in model.task_names])
    return (got, gates), ((ref, jacobian(ref, [*model.shared_parameters(), *(p for own in private for p in own)])),
                          model.gate_weights)


@pytest.mark.parametrize(("levels", "n_specific", "n_shared", "tasks"),
                         [(2, 1, 1, 2), (2, 2, 1, 3), (2, 1, 1, 1), (3, 1, 2, 3), (4, 2, 2, 2)])
def test_the_levels_jacobian_equals_autograds(levels, n_specific, n_shared, tasks):
    model = ple(levels, n_specific, n_shared, tasks, width=5)
    assert isinstance(model.layerwise(), PLELevels)
    x, y = torch.randn(9, 5), torch.arange(9) % 3
    ((losses, jac), gates), ((ref_losses, ref), ref_gates) = both_ways(model, x, y)
    torch.testing.assert_close(losses, ref_losses)
    assert jac.shape == ref.shape
    torch.testing.assert_close(jac, ref, rtol=1e-5, atol=1e-6)
    assert gates.keys() == ref_gates.keys() and len(gates) == levels * tasks + levels - 1
    for name, g in gates.items():
        torch.testing.assert_close(g, ref_gates[name])


def test_upper_experts_of_another_width_dropout_and_float64():
    model = ple(2, 1, 2, 3, expert=lambda: nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Dropout(0.3)),
                upper=lambda: nn.Sequential(nn.Linear(7, 4), nn.ReLU(), nn.Linear(4, 6)), dtype=torch.float64)
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.arange(8) % 3
    ((losses, jac), _), ((ref_losses, ref), _) = both_ways(model, x, y)
    assert jac.dtype == torch.float64
    torch.testing.assert_close(losses, ref_losses)
    torch.testing.assert_close(jac, ref)


def test_experts_it_cannot_take_are_not_offered_and_a_later_hook_is_refused():
    assert ple(2, 1, 1, 2, expert=lambda: nn.Sequential(nn.Linear(5, 5), nn.GroupNorm(1, 5))).layerwise() is None
    with pytest.raises(IncompatibleError, match="one level is CGC"):
        PLELevels(ple(1, 1, 1, 2))
    model = ple(2, 1, 1, 2)
    levels = model.layerwise()
    model.shared_gates[0].register_forward_hook(lambda *args: None)
    with pytest.raises(IncompatibleError, match="hook was registered"):
        levels.jacobian(torch.randn(3, 5), lambda outputs: torch.zeros(2), [[], []])
