"""Optimisers by name: fused kernels where the parameters allow, the same updates as PyTorch's loop."""

import pytest
import torch

from lifelong.core.optimizers import FUSED, OPTIMIZERS, build_optimizer


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_update_equals_the_per_tensor_loop(name, dtype):
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=gen, dtype=dtype), torch.randn(3, generator=gen, dtype=dtype)]
    grads = [[torch.randn(p.shape, generator=gen, dtype=dtype) for p in start] for _ in range(4)]
    results = []
    for fused in (True, False):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = build_optimizer(name, params, 0.01) if fused else OPTIMIZERS[name](params, lr=0.01)
        assert bool(opt.defaults.get("fused")) == (fused and name in FUSED)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            opt.step()
        results.append(params)
    assert not torch.equal(results[0][0].detach(), start[0])  # the steps moved the parameters
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sgd_keeps_sparse_gradients_working():
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = build_optimizer("sgd", embedding.parameters(), 0.1)
    embedding(torch.tensor([1, 2])).sum().backward()
    opt.step()  # fused SGD would refuse the sparse gradient
    assert embedding.weight.grad.is_sparse


def test_parameters_without_fused_kernels_take_the_default_loop():
    params = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert not build_optimizer("adam", params, 0.1).defaults.get("fused")


def test_unknown_names_are_config_errors_before_training():
    from lifelong.continual.engine import Engine
    from lifelong.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown optimizer 'adagrad'; choose one of \['adam', 'adamw', 'sgd'\]"):
        build_optimizer("adagrad", [torch.nn.Parameter(torch.zeros(2))], 0.1)
    with pytest.raises(ConfigError, match="unknown optimizer 'rmsprop'"):
        Engine(torch.nn.Linear(2, 2), optimizer="rmsprop")
