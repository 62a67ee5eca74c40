import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.continual.importance import call_model
from lifelong.continual.plugins.packnet import PackNet, assign_kept, prunable, task_mask
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.data.scenarios import build_benchmark


def test_pruning_keeps_the_largest_free_weights_by_hand():
    weight = torch.tensor([[0.1, -0.5], [0.3, 0.05]])
    owner = torch.tensor([[0, 0], [1, 0]], dtype=torch.uint8)
    # 3 free weights, keep round(3 · 0.5) = 2 of them: |-0.5| and |0.1|; the owned 0.3 is not eligible
    assert assign_kept(weight, owner, 2, 0.5).tolist() == [[2, 2], [1, 0]]
    assert assign_kept(weight, owner, 2, 0.0).tolist() == [[2, 2], [1, 2]]


def test_a_task_computes_with_the_weights_of_tasks_up_to_it():
    owner = torch.tensor([0, 1, 2, 3], dtype=torch.uint8)
    assert task_mask(owner, 0).tolist() == [False, True, False, False]
    assert task_mask(owner, 1).tolist() == [False, True, True, False]
    assert task_mask(owner, 2).tolist() == [False, True, True, True]


@settings(max_examples=6, deadline=None)
@given(prune=st.floats(0.3, 0.9), seed=st.integers(0, 100), retrain=st.integers(0, 1))
def test_packed_weights_are_frozen_masks_disjoint_and_pruned_weights_zero(arch, prune, seed, retrain):
    stream = arch.digits(n=3)
    plugin = PackNet(prune=prune, retrain_epochs=retrain)
    eng = arch.engine(arch.mlp(stream, (16, 16), seed=seed), [plugin], seed=seed)
    weights = prunable(eng.model)

    def biases():
        return arch.snapshot((n, p) for n, p in eng.model.backbone.named_parameters() if p.dim() == 1)

    packed, first_biases = [], None
    for i in range(3):
        arch.train_one(eng, stream, i)
        for owner, values in enumerate(packed, start=1):  # every earlier task's weights, bit for bit
            assert all(torch.equal(weights[n].detach()[plugin.owners[n] == owner], v) for n, v in values.items())
        packed.append({n: p.detach()[plugin.owners[n] == i + 1].clone() for n, p in weights.items()})
        first_biases = first_biases or biases()
        assert arch.identical(first_biases, biases())  # biases train with the first task only
    for n, masks in plugin.masks().items():
        stacked = torch.stack(masks).int()
        assert int(stacked.sum(0).max()) <= 1                      # no weight belongs to two tasks
        free = plugin.owners[n] == 0
        assert torch.equal(stacked.sum(0).bool() | free, torch.ones_like(free))
        assert not bool(weights[n].detach()[free].any())            # released weights are zero
        assert all(bool(m.any()) for m in masks)                    # every task kept some weights
    report = plugin.parameter_report()
    assert report["added"] == [0, 0, 0] and sum(report["owned"]) + report["free"] == report["parameters"]


def test_evaluating_a_task_uses_exactly_its_masked_weights(arch):
    stream = arch.digits(n=3)
    plugin = PackNet(prune=0.5)
    eng = arch.engine(arch.mlp(stream, (16,)), [plugin])
    eng.run(stream)
    x, t = stream[0].test_x, stream[0].test_t()
    ctx = eng.context(stream, 2)
    with torch.no_grad():
        state = {n: p * (plugin.owners[n] == 1) for n, p in prunable(eng.model).items()}
        expected = ctx.mask(call_model(eng.model, state, x, t), t)
        assert torch.equal(plugin.predict(ctx, x, t), expected)
        assert not torch.equal(plugin.predict(ctx, x, torch.full_like(t, 2)), expected)
    # the rows of R below the diagonal never move: no forgetting at all
    R = torch.tensor(eng.matrix)
    for j in range(3):
        assert torch.all(R[j + 1:, j] == R[j + 1, j])


def test_batchnorm_statistics_are_fixed_after_the_first_task(arch):
    """A ResNet's BatchNorm statistics train with the first task only (the paper trains later
    tasks with BatchNorm in eval mode), so earlier tasks never change, as with an MLP."""
    stream = arch.digits(n=3)

    def statistics(model):
        return arch.snapshot((n, b) for n, b in model.named_buffers() if "running" in n)

    eng = arch.engine(arch.mlp(stream, backbone="resnet18", nf=4), [PackNet(prune=0.5)])
    arch.train_one(eng, stream, 0)
    first = statistics(eng.model)
    for i in (1, 2):
        arch.train_one(eng, stream, i)
        assert arch.identical(first, statistics(eng.model))
    eng = arch.engine(arch.mlp(stream, backbone="resnet18", nf=4), [PackNet(prune=0.5)])
    R = torch.tensor(eng.run(stream))
    for j in range(3):
        assert torch.all(R[j + 1:, j] == R[j + 1, j])


def test_running_out_of_capacity_says_what_to_do(arch):
    stream = arch.digits(n=2)
    eng = arch.engine(arch.mlp(stream), [PackNet(prune=0.0)])
    with pytest.raises(IncompatibleError, match="no free weights left .* raise prune, widen the model"):
        eng.run(stream)


def test_bad_arguments_are_refused():
    for prune in (1.0, -0.1, "abc", None, float("nan")):
        with pytest.raises(ConfigError, match=r"prune .* must be a number in \[0, 1\)"):
            PackNet(prune=prune)
    assert PackNet(prune="0.5").prune == 0.5
    with pytest.raises(ConfigError, match="retrain_lr"):
        PackNet(retrain_lr=0.0)


def test_a_shared_head_over_shared_classes_is_refused_and_a_multi_head_accepted(arch):
    stream = build_benchmark("permuted-digits", "task", n_experiences=2)
    with pytest.raises(IncompatibleError, match="head='multi'"):
        arch.engine(arch.mlp(stream), [PackNet()]).run(stream)
    eng = arch.engine(arch.mlp(stream, (64,), head="multi"), [PackNet()], epochs=5)
    eng.run(stream)
    assert min(eng.matrix[-1]) > 0.5 and eng.matrix[-1][0] == eng.matrix[1][0]
