import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lifelong.continual.metrics import backward_transfer
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError, IncompatibleError, MissingExtraError
from lifelong.data.scenarios import build_benchmark
from lifelong.models.adapters import AdaptedNet, Bottleneck, LoRA


def test_lora_adds_the_scaled_low_rank_update_and_starts_at_the_frozen_layer():
    layer = nn.Linear(3, 2)
    lora = LoRA(layer, torch.Generator().manual_seed(0), rank=2, alpha=4.0)
    x = torch.randn(5, 3)
    y = layer(x)
    assert torch.equal(lora(x, y), y)  # B = 0 at initialisation
    with torch.no_grad():
        lora.b.copy_(torch.tensor([[1.0, 0.0], [2.0, -1.0]]))
    assert torch.allclose(lora(x, y), y + 2.0 * x @ lora.a.T @ lora.b.T, atol=1e-6)


def test_bottleneck_is_near_identity_at_initialisation_and_residual():
    layer = nn.Linear(4, 6)
    adapter = Bottleneck(layer, torch.Generator().manual_seed(0), size=3)
    y = torch.randn(8, 6)
    assert (adapter(None, y) - y).abs().max() < 1e-3
    assert float(adapter.down.weight.detach().abs().max()) <= 2e-2  # truncated at two standard deviations
    with torch.no_grad():
        expected = y + adapter.up(F.gelu(adapter.down(y)))
    assert torch.equal(adapter(None, y), expected)


def test_each_sample_uses_its_own_tasks_adapters():
    torch.manual_seed(0)
    net = AdaptedNet([nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)], lambda lin, g: LoRA(lin, g, rank=2, alpha=2.0))
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        for lora in net.add_task(gen):
            nn.init.normal_(lora.b, generator=gen)
    x = torch.randn(6, 4)
    slots = torch.tensor([0, 1, 1, 0, 1, 0])
    mixed = net(x, slots)
    for s in (0, 1):
        alone = net(x[slots == s], torch.full(((slots == s).sum(),), s))
        assert torch.allclose(mixed[slots == s], alone, atol=1e-6)
    assert not torch.allclose(net(x, torch.zeros(6, dtype=torch.long)), net(x, torch.ones(6, dtype=torch.long)))


@settings(max_examples=6, deadline=None)
@given(kind=st.sampled_from(["adapters", "lora"]), first=st.booleans(), seed=st.integers(0, 100))
def test_adapter_training_leaves_the_backbone_and_earlier_adapters_bit_identical(arch, kind, first, seed):
    """The frozen backbone keeps its weights and its BatchNorm statistics."""
    stream = arch.digits(n=3)
    plugin = build_strategy(kind, {"train_backbone_first": first})[0]
    model = arch.mlp(stream, (16, 16), seed=seed)
    model.backbone.net.insert(2, nn.BatchNorm1d(16))

    def frozen(module):
        return arch.snapshot([*module.named_parameters(), *module.named_buffers()])

    original = frozen(model.backbone)
    added = arch.Probe(at_start=lambda: arch.snapshot(plugin.net.tasks[-1].named_parameters()))
    eng = arch.engine(model, [plugin, added], seed=seed)
    arch.train_one(eng, stream, 0)
    backbone = frozen(plugin.net.layers)
    assert arch.identical(backbone, {n.removeprefix("net."): v for n, v in original.items()}) != first
    adapters0 = arch.snapshot(plugin.net.tasks[0].named_parameters())
    for i in (1, 2):
        arch.train_one(eng, stream, i)
        assert arch.identical(backbone, frozen(plugin.net.layers))
        assert arch.identical(adapters0, arch.snapshot(plugin.net.tasks[0].named_parameters()))
    # the last adapter set did learn: training moved it from the values it was added with
    assert not arch.identical(added.started[2], arch.snapshot(plugin.net.tasks[2].named_parameters()))


@pytest.mark.parametrize("kind,args,per_layer", [
    ("adapters", {"bottleneck": 5}, lambda d_in, d_out: 2 * d_out * 5 + d_out + 5),
    ("lora", {"rank": 3}, lambda d_in, d_out: 3 * (d_in + d_out)),
])
def test_growth_per_task_is_the_adapter_size(arch, kind, args, per_layer):
    stream = arch.digits(n=3)
    plugin = build_strategy(kind, args)[0]
    eng = arch.engine(arch.mlp(stream, (16, 12)), [plugin])
    base = sum(p.numel() for p in eng.model.parameters())
    eng.run(stream)
    per_task = per_layer(64, 16) + per_layer(16, 12)
    assert plugin.parameter_report()["added"] == [per_task] * 3
    assert sum(p.numel() for p in eng.model.parameters()) == base + 3 * per_task


def test_peft_backend_is_an_optional_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft → ImportError, installed or not
    with pytest.raises(MissingExtraError, match=r"pip install lifelong\[adapters\]"):
        build_strategy("lora", {"backend": "peft"})
    with pytest.raises(ConfigError, match="backend"):
        build_strategy("lora", {"backend": "hf"})
    with pytest.raises(ConfigError, match="target_modules"):
        build_strategy("lora", {"target_modules": ["fc"]})
    with pytest.raises(ConfigError, match="bottleneck"):
        build_strategy("adapters", {"bottleneck": 0})


def test_peft_lora_learns_every_task_and_leaves_earlier_ones_bit_identical(arch):
    stream = arch.digits("task", n=3)
    model = arch.mlp(stream, (64,), head="multi")
    eng = arch.engine(model, build_strategy("lora", {"backend": "peft", "rank": 8}), epochs=5, lr=0.01, batch_size=32)
    after = []
    R = eng.run(stream, on_experience_end=lambda i, e: after.append(arch.snapshot(
        (n, p) for n, p in e.model.named_parameters() if "task_0" in n or "base_layer" in n)))
    assert after[0] and arch.identical(after[0], after[2])  # frozen base, task 0's adapter untouched
    assert {n for n, _ in model.named_parameters() if "lora_A" in n} == {
        f"backbone.net.1.lora_A.task_{u}.weight" for u in range(3)}
    assert backward_transfer(R) >= -0.01
    assert min(R[-1]) >= 0.9  # the frozen random layer plus a rank-8 adapter and the head learn each task
    assert [type(m).__name__ for m in eng.plugins[0].tuner_layers] == ["Linear"]  # peft's LoRA layer


def test_peft_lora_keeps_the_frozen_bases_batchnorm_statistics(arch):
    """Any nn.Module with a head: the base's BatchNorm used to update its running statistics on every
    later task (0.35 off after three tasks, task 1's accuracy 0.991 → 0.982); frozen like its weights,
    they never change and an earlier task's accuracy stays bit-identical. The head's BatchNorm trains."""

    class Net(nn.Module):
        def __init__(self, n_classes: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU())
            self.head = nn.Sequential(nn.BatchNorm1d(32), nn.Linear(32, n_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    stream = arch.digits("task", n=3)
    torch.manual_seed(0)
    model = Net(stream.n_classes)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    eng = arch.engine(model, build_strategy("lora", {"backend": "peft"}), epochs=2, batch_size=32, lr=0.01)
    R = eng.run(stream)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("body"))
    assert not torch.equal(after["head.0.running_mean"], before["head.0.running_mean"])
    assert R[1][0] == R[2][0] == R[3][0] and R[3][0] > 0.9


def test_peft_backend_refuses_what_it_cannot_do(arch):
    for args, match in [({"infer_task": True}, "infer the task"),
                        ({"train_backbone_first": True}, "frozen from the first task"),
                        ({"target_modules": "net.1"}, "list of module names")]:
        with pytest.raises(ConfigError, match=match):
            build_strategy("lora", {"backend": "peft", **args})
    assert build_strategy("lora", {"backend": "peft", "train_backbone_first": False})[0].name == "lora"
    stream = arch.digits("task", n=1)
    plugins = build_strategy("lora", {"backend": "peft", "target_modules": ["net.1", "fc9"]})
    with pytest.raises(ConfigError, match=r"\['fc9'\] name no module.*\['backbone.net.1'\]"):
        arch.engine(arch.mlp(stream, (8,)), plugins).run(stream)
    shared = build_benchmark("permuted-digits", "task", n_experiences=2)
    with pytest.raises(IncompatibleError, match="head='multi'"):
        arch.engine(arch.mlp(shared, (8,)), build_strategy("lora", {"backend": "peft"})).run(shared)


def test_peft_backend_accepts_targets_by_their_last_names(arch):
    stream = arch.digits("task", n=1)
    model = arch.mlp(stream, (8, 8), head="multi")
    arch.engine(model, build_strategy("lora", {"backend": "peft", "target_modules": ["3"]})).run(stream)
    assert {n for n, _ in model.named_parameters() if "lora_A" in n} == {"backbone.net.3.lora_A.task_0.weight"}
