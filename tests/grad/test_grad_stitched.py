"""The stitched task Jacobian of cross-stitch columns equals autograd's batched one for columns of
every kind of layer the layerwise backward takes, any stitch points and any number of tasks, and
refuses (or is not offered) columns it cannot take."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import IncompatibleError
from lifelong.grad import StitchedColumns, jacobian
from lifelong.multitask.architectures.cross_stitch import CrossStitch

COLUMNS = {  # column factory, input shape, stitch_after, output width
    "two Linear/ReLU stages": (lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh()),
                               (9, 5), None, 6),
    "three stages with dropout and a bias-free layer": (lambda: nn.Sequential(
        nn.Linear(5, 8), nn.GELU(), nn.Dropout(0.3), nn.Linear(8, 8, bias=False), nn.ELU(), nn.Linear(8, 6)),
        (9, 5), None, 6),
    "convolutions, pooling and a flatten": (lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3, padding=1, bias=False),
        nn.Tanh(), nn.Flatten(), nn.Linear(48, 6)), (4, 2, 8, 8), None, 6),
    "a stage that starts with its activation": (lambda: nn.Sequential(
        nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.SiLU()), (9, 5), [0], 6),
}


def model_for(name: str, tasks: int, dtype: torch.dtype = torch.float32) -> tuple[CrossStitch, torch.Tensor]:
    build, shape, stitch_after, width = COLUMNS[name]
    torch.manual_seed(0)
    heads = {f"t{i}": nn.Linear(width, 3) for i in range(tasks)}
    model = CrossStitch(build, heads, self_weight=0.7, stitch_after=stitch_after).to(dtype)
    with torch.no_grad():  # units away from their initialisation, so every entry matters
        for unit in model.alphas:
            unit.add_(0.1 * torch.randn_like(unit))
    return model, torch.randn(*shape, dtype=dtype)


def both_ways(model: CrossStitch, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """(losses, J) by the stitched backward and by `jacobian`, each from the same random state."""
    private = [model.own_parameters(t) for t in model.task_names]

    def losses(outputs):
        return torch.stack([F.cross_entropy(model.layerwise_output(t, x, own), y)
                            for t, own in zip(model.task_names, outputs, strict=True)])

    stitched = model.layerwise()
    torch.manual_seed(7)
    got = stitched.jacobian(x, losses, private)
    torch.manual_seed(7)
    out = model(x)
    ref_losses = torch.stack([F.cross_entropy(out[t], y) for t in model.task_names])
    return stitched, got, (ref_losses, jacobian(ref_losses, [*model.shared_parameters(), *model.task_parameters()]))


@pytest.mark.parametrize("tasks", [1, 2, 3])
@pytest.mark.parametrize("name", list(COLUMNS))
def test_the_stitched_jacobian_equals_autograds(name, tasks):
    model, x = model_for(name, tasks)
    stitched, (losses, jac), (ref_losses, ref) = both_ways(model, x, torch.arange(len(x)) % 3)
    assert [id(p) for p in stitched.params] == [id(p) for p in model.shared_parameters()]
    torch.testing.assert_close(losses, ref_losses)
    assert jac.shape == ref.shape
    torch.testing.assert_close(jac, ref, rtol=1e-5, atol=1e-6)
    n_shared = sum(p.numel() for p in model.shared_parameters())
    assert (jac[0, n_shared + 3 * 6 + 3:] == 0).all()  # task 0's row is zero on the other tasks' heads
    if tasks > 1:
        assert (jac[:, :n_shared] != 0).any(1).all()  # every task reaches every column through the units


def test_float64_columns_give_a_float64_jacobian():
    model, x = model_for("two Linear/ReLU stages", 2, torch.float64)
    _, (_, jac), (_, ref) = both_ways(model, x, torch.arange(len(x)) % 3)
    assert jac.dtype == torch.float64
    torch.testing.assert_close(jac, ref)


def test_a_task_whose_head_ignores_its_column_gets_zero_column_rows():
    model, x = model_for("two Linear/ReLU stages", 2)
    private = [model.own_parameters(t) for t in model.task_names]

    def losses(outputs):  # task t1 reads a constant, not its column
        return torch.stack([model.heads["t0"](outputs[0][0]).pow(2).mean(), model.heads["t1"](torch.ones(9, 6)).sum()])

    _, jac = model.layerwise().jacobian(x, losses, private)
    n_shared = sum(p.numel() for p in model.shared_parameters())
    assert (jac[1, :n_shared] == 0).all() and (jac[0, :n_shared] != 0).any()


def test_columns_it_cannot_take_are_not_offered_and_a_later_hook_or_a_wrong_unit_is_refused():
    torch.manual_seed(0)
    heads = {"a": nn.Linear(4, 1), "b": nn.Linear(4, 1)}
    assert CrossStitch(lambda: nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(2, 4)), heads).layerwise() is None
    model = CrossStitch(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU()), heads)
    stitched = model.layerwise()
    with pytest.raises(IncompatibleError, match="k×k unit"):
        StitchedColumns(model.stages, [torch.ones(3, 3)])
    model.stages[0][1][1].register_forward_hook(lambda *args: None)
    with pytest.raises(IncompatibleError, match="hook was registered"):
        stitched.jacobian(torch.randn(2, 3), lambda outputs: torch.stack([own[0].sum() for own in outputs]), [[], []])
