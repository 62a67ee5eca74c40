"""The shared mathematics of the regularisation strategies: flat vectors, penalty, per-sample means."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.continual.importance import (
    QuadraticPull,
    flat_grads,
    flat_params,
    grow_flat,
    quadratic_penalty,
    sample_rows,
)
from lifelong.continual.per_sample import linear_per_sample_mean, per_sample_mean
from lifelong.core.errors import ConfigError, IncompatibleError, ShapeMismatchError


def test_flat_params_and_grads_follow_parameter_order(reg):
    model = reg.tiny_model()
    assert torch.equal(flat_params(model), reg.flat(model.parameters()))
    model.zero_grad(set_to_none=True)
    model.backbone.net[1].weight.sum().backward()  # only the first layer's weight gets a gradient
    g = flat_grads(model.parameters())
    n_first = model.backbone.net[1].weight.numel()
    assert torch.equal(g[:n_first], torch.ones(n_first, dtype=g.dtype)) and not g[n_first:].any()
    head = [model.head.weight, model.head.bias]  # any subset of the parameters, in the order given
    assert torch.equal(flat_grads(head), torch.zeros(sum(p.numel() for p in head), dtype=g.dtype))


def test_quadratic_penalty_closed_form_and_task_stack():
    theta = torch.tensor([1.0, -2.0])
    anchor = torch.tensor([0.5, 1.0])
    weight = torch.tensor([4.0, 0.25])
    assert quadratic_penalty(theta, anchor, weight).item() == pytest.approx(4 * 0.25 + 0.25 * 9)
    stacked = quadratic_penalty(theta, torch.stack([anchor, -anchor]), torch.stack([weight, weight]))
    assert stacked.item() == pytest.approx(4 * 0.25 + 0.25 * 9 + 4 * 2.25 + 0.25 * 1)


@pytest.mark.parametrize("tasks", [(), (3,)])
def test_quadratic_penalty_gradient_matches_autograd_reference(tasks):
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    anchor = torch.randn(*tasks, 6, generator=gen, dtype=torch.float64)
    weight = torch.rand(*tasks, 6, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda th: quadratic_penalty(th, anchor, weight), (theta,))
    (g,) = torch.autograd.grad(quadratic_penalty(theta, anchor, weight), theta)
    torch.testing.assert_close(g, (2 * weight * (theta.detach() - anchor)).reshape(-1, 6).sum(0))
    with pytest.raises(ShapeMismatchError, match="entries"):
        quadratic_penalty(theta, torch.zeros(5), torch.zeros(6))


def test_quadratic_pull_equals_autograd_of_the_penalty(reg):
    """The training-step form: value = Σ Ω (θ − θ*)², add_grad adds the autograd gradient of
    scale × value into .grad once, leaves frozen parameters alone and fills missing grads."""
    model = reg.tiny_model().double()
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(0)
    anchor = flat_params(model).detach() + torch.randn(len(flat_params(model)), generator=gen, dtype=torch.float64)
    weight = torch.rand(anchor.shape, generator=gen, dtype=torch.float64)
    reference = quadratic_penalty(flat_params(model), anchor, weight)
    expected = torch.autograd.grad(2.5 * reference, params)
    model.head.bias.requires_grad_(False)
    params[0].grad = torch.ones_like(params[0])  # an existing gradient is added to, not replaced
    pull = QuadraticPull(params)
    value = pull.value(anchor, weight)
    assert not value.requires_grad
    torch.testing.assert_close(value, reference.detach(), rtol=1e-12, atol=0)
    assert pull.add_grad(2.5) and not pull.add_grad(2.5)  # once per value
    torch.testing.assert_close(params[0].grad, 1 + expected[0], rtol=1e-12, atol=1e-12)
    for p, g in zip(params[1:], expected[1:], strict=True):
        if p is model.head.bias:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)
    assert pull.holds(params) and not pull.holds(params[:-1])
    model.float()  # the same parameter objects in another dtype: buffers must be remade
    assert not pull.holds(list(model.parameters()))
    with pytest.raises(ShapeMismatchError, match="flat entry per parameter"):
        pull.value(anchor[:-1], weight[:-1])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2), st.integers(0, 2)),
                min_size=1, max_size=3))
def test_grow_flat_keeps_old_entries_and_zero_fills(reg, dims):
    old = [[a, b] for a, b, _, _ in dims]
    new = [[a + da, b + db] for a, b, da, db in dims]
    tensors = [torch.randn(*s) for s in old]
    grown = grow_flat(reg.flat(tensors), old, new).split([a * b for a, b in new])
    for before, after, s in zip(tensors, grown, new, strict=True):
        after = after.reshape(s)
        assert torch.equal(after[: before.shape[0], : before.shape[1]], before)
        after[: before.shape[0], : before.shape[1]] = 0
        assert not after.any()  # everything else is zero
    stacked = grow_flat(torch.stack([reg.flat(tensors), -reg.flat(tensors)]), old, new)
    assert torch.equal(stacked[1], -stacked[0])


def test_grow_flat_refuses_shrinking():
    with pytest.raises(ShapeMismatchError, match="grow"):
        grow_flat(torch.zeros(6), [[2, 3]], [[2, 2]])


def test_per_sample_mean_equals_a_loop_over_samples(reg):
    model, stream = reg.tiny_model("multi"), reg.tiny_stream("task")
    exp = stream[1]
    x, t = exp.train_x, exp.train_t()

    def cube(out, ti):
        return out.pow(3).sum()

    got = per_sample_mean(model, cube, x, t, transform=torch.Tensor.abs_, chunk_size=5)
    ref = reg.loop_grads(model, lambda i: reg.forward(model, x[i:i + 1], t[i:i + 1]).pow(3).sum(), len(x))
    torch.testing.assert_close(got, torch.stack(ref).abs().mean(0), rtol=1e-10, atol=1e-12)


class Twice(torch.nn.Module):
    """One Linear layer applied twice: its per-sample gradient is no outer product."""

    def __init__(self) -> None:
        super().__init__()
        self.flat, self.layer = torch.nn.Flatten(), torch.nn.Linear(9, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(torch.tanh(self.layer(self.flat(x))))


class Cosine(torch.nn.Linear):
    """A Linear subclass with its own forward: no outer-product gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(torch.nn.functional.normalize(x, dim=1),
                                          torch.nn.functional.normalize(self.weight, dim=1), self.bias)


class Tied(torch.nn.Module):
    """Two layers sharing one weight, and a weight also used outside its layer."""

    def __init__(self, outside: bool) -> None:
        super().__init__()
        self.flat, self.a, self.b = torch.nn.Flatten(), torch.nn.Linear(9, 9), torch.nn.Linear(9, 9)
        self.outside = outside
        if not outside:
            self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(self.flat(x)))
        return self.b(h) + (h @ self.a.weight.T if self.outside else 0)


class Cut(torch.nn.Module):
    """A frozen first layer (its output detached) in front of a trained one."""

    def __init__(self) -> None:
        super().__init__()
        self.flat, self.a, self.b = torch.nn.Flatten(), torch.nn.Linear(9, 6), torch.nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(self.flat(x))).detach())


CASES = {
    "mlp": (lambda reg: reg.tiny_model(), True),
    "in-place relu": (lambda reg: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 6),
                                                      torch.nn.ReLU(inplace=True), torch.nn.Linear(6, 4)), True),
    "detached layer": (lambda reg: Cut(), True),
    "reused layer": (lambda reg: Twice(), False),
    "conv": (lambda reg: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2), torch.nn.Flatten(), torch.nn.Linear(8, 4)),
             False),
    "linear subclass": (lambda reg: torch.nn.Sequential(torch.nn.Flatten(), Cosine(9, 4)), False),
    "tied weights": (lambda reg: Tied(outside=False), False),
    "weight used outside its layer": (lambda reg: Tied(outside=True), False),
}


@pytest.mark.parametrize("transform", [torch.Tensor.square_, torch.Tensor.abs_])
@pytest.mark.parametrize("case", list(CASES))
def test_outer_product_shortcut_equals_the_loop_and_steps_aside_when_it_does_not_hold(reg, monkeypatch,
                                                                                      case, transform):
    """Models of plain Linear layers take the one-matrix-product-per-layer form (in chunks of
    LINEAR_ROWS samples); a layer applied twice, a convolution, a Linear subclass, tied weights or
    a weight used outside its layer fall back to vmap; all equal the per-sample loop."""
    monkeypatch.setattr("lifelong.continual.per_sample.LINEAR_ROWS", 3)
    torch.manual_seed(0)
    build, shortcut_applies = CASES[case]
    model = build(reg).double()
    x = torch.randn(8, 1, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))

    def loss(out, ti, yi):
        return torch.nn.functional.cross_entropy(out[:, :4], yi)

    shortcut = linear_per_sample_mean(model, loss, x, torch.zeros(8, dtype=torch.long), y, transform=transform)
    assert (shortcut is not None) == shortcut_applies
    got = per_sample_mean(model, loss, x, None, y, transform=transform)
    ref = reg.loop_grads(model, lambda i: loss(model(x[i:i + 1]), None, y[i:i + 1]), len(x))
    torch.testing.assert_close(got, transform(torch.stack(ref)).mean(0), rtol=1e-10, atol=1e-12)
    # any other transform takes the per-sample gradients
    assert linear_per_sample_mean(model, loss, x, torch.zeros(8, dtype=torch.long), y,
                                  transform=lambda g: g.pow(3)) is None


def test_per_sample_mean_restores_training_mode_and_validates(reg):
    model = reg.tiny_model()
    model.train()
    x = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    per_sample_mean(model, lambda out, t: out.sum(), x)
    assert model.training
    with pytest.raises(ShapeMismatchError, match="one row per input"):
        per_sample_mean(model, lambda out, t, y: out.sum(), x, None, torch.zeros(3))
    with pytest.raises(ShapeMismatchError, match="no samples"):
        per_sample_mean(model, lambda out, t: out.sum(), x[:0])
    with pytest.raises(ConfigError, match="chunk_size"):
        per_sample_mean(model, lambda out, t: out.sum(), x, chunk_size=0)
    with pytest.raises(ConfigError, match="chunk_size must be a positive integer, got 1.5"):
        per_sample_mean(model, lambda out, t: out.sum(), x, chunk_size=1.5)
    with pytest.raises(ShapeMismatchError, match=r"fails on inputs of per-sample shape \(1, 3, 2\)"):
        per_sample_mean(model, lambda out, t: out.sum(), x[..., :2])
    with pytest.raises(IncompatibleError, match="no parameters"):
        per_sample_mean(torch.nn.Flatten(), lambda out, t: out.sum(), x)
    assert model.training  # restored after every refusal


def test_sample_rows_draws_one_subset_for_all_tensors():
    a, b = torch.arange(10), torch.arange(10) * 2
    sa, sb = sample_rows(4, torch.Generator().manual_seed(1), a, b)
    assert len(sa) == 4 and torch.equal(sb, sa * 2) and torch.equal(sa, sa.sort().values)
    assert sample_rows(None, torch.Generator(), a)[0] is a
    assert sample_rows(20, torch.Generator(), a)[0] is a
