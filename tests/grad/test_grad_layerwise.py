"""The layerwise task Jacobian equals autograd's batched one on every layer it takes (Linear,
convolutions with stride, dilation and groups, pooling, reshapes, elementwise layers), and refuses
(or is not offered) trunks it cannot take."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.errors import IncompatibleError, ShapeMismatchError
from lifelong.grad import jacobian
from lifelong.grad.layerwise import LayerwiseTrunks, layerwise_parameters


def heads_for(width: int, tasks: int = 3, classes: int = 4) -> nn.ModuleList:
    return nn.ModuleList([nn.Sequential(nn.Linear(width, 5), nn.Tanh(), nn.Linear(5, classes)) for _ in range(tasks)])


def ce_losses(heads: nn.ModuleList, y: torch.Tensor):
    def losses(features: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([F.cross_entropy(h(z).reshape(len(y), -1, h[-1].out_features).mean(1), y)
                            for h, z in zip(heads, features, strict=True)])
    return losses


def one_trunk(losses_of):
    """A loss function of each task's features as one of each task's list of trunk outputs."""
    return lambda outputs: losses_of([own[0] for own in outputs])


def both_ways(trunk: nn.Sequential, heads: nn.ModuleList, x: torch.Tensor, losses_of) -> tuple:
    """(losses, J) layerwise and by `jacobian`, each from the same random state (dropout masks)."""
    torch.manual_seed(7)
    layerwise = LayerwiseTrunks([trunk]).jacobian(x, one_trunk(losses_of), [list(h.parameters()) for h in heads])
    torch.manual_seed(7)
    losses = losses_of([trunk(x)] * len(heads))
    return layerwise, (losses, jacobian(losses, [*trunk.parameters(), *heads.parameters()]))


TRUNKS = {
    "relu mlp on images": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8),
                                                 nn.ReLU()), (10, 3, 4)),
    "every elementwise layer": (lambda: nn.Sequential(
        nn.Linear(6, 9), nn.LeakyReLU(0.2), nn.Linear(9, 9, bias=False), nn.ELU(), nn.Identity(),
        nn.Linear(9, 9), nn.GELU(), nn.Linear(9, 9), nn.SiLU(), nn.Linear(9, 9), nn.Tanh(), nn.Linear(9, 9),
        nn.Sigmoid(), nn.Linear(9, 9), nn.Softplus(), nn.Dropout(0.4), nn.Linear(9, 8)), (7, 6)),
    "in-place layers": (lambda: nn.Sequential(nn.Linear(6, 9), nn.LeakyReLU(0.1, inplace=True), nn.Linear(9, 9),
                                              nn.ReLU(inplace=True), nn.Linear(9, 9), nn.Dropout(0.2, inplace=True),
                                              nn.ELU(inplace=True), nn.Linear(9, 8)), (7, 6)),
    "convolutions and pooling": (lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 3, padding=(1, 2), dilation=(1, 2), groups=2), nn.Tanh(), nn.AdaptiveAvgPool2d(3),
        nn.Flatten(), nn.Linear(54, 8)), (5, 3, 12, 12)),
    "1-d convolution on unflattened rows": (lambda: nn.Sequential(
        nn.Unflatten(1, (2, 10)), nn.Conv1d(2, 4, 3), nn.GELU(), nn.AvgPool1d(2), nn.Conv1d(4, 2, 1), nn.Flatten(),
        nn.Linear(8, 8)), (6, 20)),
    "token rows (3-d inputs)": (lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8)),
                                (4, 9, 5)),
    "batch and layer norms": (lambda: nn.Sequential(
        nn.Linear(6, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.Linear(9, 9, bias=False), nn.LayerNorm(9), nn.GELU(),
        nn.Linear(9, 9), nn.LayerNorm(9, bias=False), nn.Linear(9, 8)), (7, 6)),
    "convolutions with batch norm, layer norm over two dimensions": (lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(2), nn.LayerNorm(16),
        nn.Flatten(), nn.Linear(64, 8)), (5, 3, 4, 4)),
    "batch norm on token rows (3-d inputs)": (lambda: nn.Sequential(nn.Unflatten(1, (3, 4)), nn.BatchNorm1d(3),
                                                                     nn.Flatten(), nn.Linear(12, 8)), (6, 12)),
}


@pytest.mark.parametrize("name", list(TRUNKS))
def test_the_layerwise_jacobian_equals_autograds(name):
    build, shape = TRUNKS[name]
    torch.manual_seed(0)
    trunk, heads = build(), heads_for(8)
    x, y = torch.randn(*shape), torch.randint(0, 4, (shape[0],))
    (losses, jac), (ref_losses, ref) = both_ways(trunk, heads, x, ce_losses(heads, y))
    torch.testing.assert_close(losses, ref_losses)
    assert jac.shape == ref.shape
    torch.testing.assert_close(jac, ref, rtol=1e-5, atol=1e-6)
    n_shared = sum(p.numel() for p in trunk.parameters())
    sizes = [sum(p.numel() for p in h.parameters()) for h in heads]
    assert (jac[0, n_shared + sizes[0]:] == 0).all() and (jac[2, n_shared:n_shared + sizes[0] + sizes[1]] == 0).all()


def test_batch_norm_in_evaluation_uses_its_running_statistics_and_in_training_updates_them_once():
    torch.manual_seed(0)
    trunk, heads = nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9), nn.Tanh(), nn.Linear(9, 8)), heads_for(8)
    for _ in range(3):  # running statistics away from their initial 0 and 1
        trunk(3 + 2 * torch.randn(16, 6))
    x, y = torch.randn(7, 6), torch.randint(0, 4, (7,))
    before = trunk[1].running_mean.clone()
    LayerwiseTrunks([trunk]).jacobian(x, one_trunk(ce_losses(heads, y)), [list(h.parameters()) for h in heads])
    after_one = trunk[1].running_mean.clone()
    trunk[1].running_mean.copy_(before)
    trunk(x)
    torch.testing.assert_close(after_one, trunk[1].running_mean)
    trunk.eval()
    (losses, jac), (ref_losses, ref) = both_ways(trunk, heads, x, ce_losses(heads, y))
    torch.testing.assert_close(losses, ref_losses)
    torch.testing.assert_close(jac, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trunk[1].running_mean, after_one)


def test_a_task_that_ignores_the_trunk_gets_a_zero_trunk_row_and_an_unused_head_is_refused():
    torch.manual_seed(0)
    trunk, heads = nn.Sequential(nn.Linear(4, 6), nn.ReLU()), nn.ModuleList([nn.Linear(6, 1), nn.Linear(6, 1)])
    x = torch.randn(5, 4)

    def losses(features):  # task 1 reads a constant input, not the trunk
        return torch.stack([heads[0](features[0]).pow(2).mean(), heads[1](torch.ones(5, 6)).pow(2).mean()])

    _, jac = LayerwiseTrunks([trunk]).jacobian(x, one_trunk(losses), [list(h.parameters()) for h in heads])
    n_shared = sum(p.numel() for p in trunk.parameters())
    assert (jac[1, :n_shared] == 0).all() and (jac[0, :n_shared] != 0).any()
    spare = nn.Linear(6, 1)
    with pytest.raises(IncompatibleError, match="do not depend on parameters"):
        LayerwiseTrunks([trunk]).jacobian(x, one_trunk(losses),
                                          [list(heads[0].parameters()), [*heads[1].parameters(), spare.weight]])


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def frozen_first() -> nn.Sequential:
    trunk = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    trunk[0].weight.requires_grad_(False)
    return trunk


def hooked() -> nn.Sequential:
    trunk = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    trunk[1].register_forward_hook(lambda *args: None)
    return trunk


twice = nn.Linear(4, 4)
REFUSED = {
    "a batch norm without scale and shift": lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False)),
    "a group norm": lambda: nn.Sequential(nn.Linear(4, 4), nn.GroupNorm(2, 4)),
    "a convolution padded by reflection": lambda: nn.Sequential(nn.Conv1d(1, 2, 3, padding=1, padding_mode="reflect")),
    "a convolution padded 'same'": lambda: nn.Sequential(nn.Conv1d(1, 2, 3, padding="same")),
    "a pooling that returns indices": lambda: nn.Sequential(nn.Linear(4, 4), nn.MaxPool1d(2, return_indices=True)),
    "one Linear used twice": lambda: nn.Sequential(twice, nn.ReLU(), twice),
    "a frozen Linear": frozen_first,
    "a Sequential subclass with its own forward": lambda: Residual(nn.Linear(4, 4), nn.ReLU()),
    "a hooked layer": hooked,
    "no Linear": lambda: nn.Sequential(nn.ReLU()),
    "not a Sequential": lambda: nn.Linear(4, 4),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_trunks_it_cannot_take_are_not_offered_and_refused(name):
    trunk = REFUSED[name]()
    assert layerwise_parameters(trunk) is None
    with pytest.raises(IncompatibleError, match="use lifelong.grad.jacobian"):
        LayerwiseTrunks([nn.Sequential(nn.Linear(4, 4)), trunk])


def test_parameters_come_in_the_trunks_order_and_a_later_hook_is_refused():
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3, bias=False))
    assert [id(p) for p in layerwise_parameters(trunk)] == [id(p) for p in trunk.parameters()]
    checked = LayerwiseTrunks([trunk])
    trunk[2].register_forward_pre_hook(lambda *args: None)
    with pytest.raises(IncompatibleError, match="hook was registered"):
        checked.jacobian(torch.randn(2, 4), lambda outputs: torch.stack([own[0].sum() for own in outputs]), [[]])


def test_several_trunks_mixed_per_task_as_in_a_mixture_of_experts():
    """Three experts of different depths, mixed by each task's softmax gate on the input: the
    layerwise Jacobian over the experts and each task's gate and head equals autograd's."""
    torch.manual_seed(0)
    experts = [nn.Sequential(nn.Linear(5, 6), nn.ReLU()), nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6)),
               nn.Sequential(nn.Flatten(), nn.Linear(5, 6, bias=False), nn.GELU())]
    gates = nn.ModuleList([nn.Linear(5, 3) for _ in range(2)])
    heads = nn.ModuleList([nn.Linear(6, 1) for _ in range(2)])
    x, y = torch.randn(9, 5), torch.randn(9, 2)

    def losses(outputs):
        return torch.stack([((heads[t]((torch.softmax(gates[t](x), 1).unsqueeze(2) * torch.stack(own, 1)).sum(1))
                              - y[:, t:t + 1]) ** 2).mean() for t, own in enumerate(outputs)])

    private = [[*gates[t].parameters(), *heads[t].parameters()] for t in range(2)]
    checked = LayerwiseTrunks(experts)
    got, jac = checked.jacobian(x, losses, private)
    expected = losses([[e(x) for e in experts]] * 2)
    torch.testing.assert_close(got, expected)
    assert [id(p) for p in checked.params] == [id(p) for e in experts for p in e.parameters()]
    torch.testing.assert_close(jac, jacobian(expected, [*checked.params, *(p for own in private for p in own)]))


def test_task_losses_must_give_one_loss_per_task():
    trunk, heads = nn.Sequential(nn.Linear(4, 6), nn.ReLU()), nn.ModuleList([nn.Linear(6, 1), nn.Linear(6, 1)])
    private = [list(h.parameters()) for h in heads]
    checked, x = LayerwiseTrunks([trunk]), torch.randn(5, 4)
    with pytest.raises(ShapeMismatchError, match=r"the 2 task losses as one vector \(2,\).*got \(1,\)"):
        checked.jacobian(x, lambda outputs: heads[0](outputs[0][0]).mean().reshape(1), private)
    with pytest.raises(ShapeMismatchError, match="got float"):
        checked.jacobian(x, lambda outputs: 1.0, private)
