"""Architectures: output shapes for every head kind, the shared/task parameter split, gates,
cross-stitch units and the soft-sharing penalty."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lifelong.core.errors import ConfigError
from lifelong.core.registries import ARCHITECTURES
from lifelong.data.multitask import MultiTaskData, TaskSpec, load_benchmark, shared_inputs
from lifelong.multitask.architectures import CrossStitch, build_architecture
from lifelong.multitask.architectures.mmoe import Gate
from lifelong.multitask.architectures.soft_sharing import l2_coupling, trace_coupling
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.heads import build_heads
from lifelong.multitask.losses import task_kind
from lifelong.multitask.presets import build_default
from lifelong.multitask.weighting import build_weighting

ARCHS = ARCHITECTURES.names()


def test_every_architecture_is_registered_with_libmtl_aliases():
    assert set(ARCHS) >= {"hps", "soft", "cross_stitch", "mmoe", "cgc", "ple"}
    for alias, name in (("HPS", "hps"), ("Cross_stitch", "cross_stitch"), ("MMoE", "mmoe"),
                        ("CGC", "cgc"), ("PLE", "ple")):
        assert ARCHITECTURES.canonical(alias) == name


@pytest.mark.parametrize("arch", ARCHS)
def test_vector_outputs_and_parameter_split(mtl, arch):
    data = mtl.toy_shared()
    model = build_default(arch, data, width=8)
    x = data.splits["a"].train_x[:5]
    out = model(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"a": (5, 3), "b": (5, 2), "c": (5, 1)}
    shared = {id(p) for p in model.shared_parameters()}
    private = {id(p) for p in model.task_parameters()}
    assert not shared & private
    assert shared | private == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("arch", ARCHS)
def test_task_parameters_receive_gradient_from_their_own_task_only(mtl, arch):
    """The split is truthful: a task's loss never reaches another task's private parameters,
    and (except soft sharing) some shared parameter is reached by every task."""
    data = mtl.toy_shared()
    model = build_default(arch, data, width=8)
    out = model(data.splits["a"].train_x[:16])
    private = model.task_parameters()
    reached = []
    for t in data.task_names:
        grads = torch.autograd.grad(out[t].pow(2).mean(), private, retain_graph=True,
                                    allow_unused=True, materialize_grads=True)
        reached.append([bool(g.abs().sum() > 0) for g in grads])
    assert all(sum(col) <= 1 for col in zip(*reached, strict=True)), "a private parameter is reached by 2 tasks"
    if arch != "soft":
        shared = model.shared_parameters()
        for t in data.task_names:
            grads = torch.autograd.grad(out[t].pow(2).mean(), shared, retain_graph=True,
                                        allow_unused=True, materialize_grads=True)
            assert any(bool(g.abs().sum() > 0) for g in grads)


@pytest.mark.parametrize("arch", ARCHS)
def test_dense_heads_on_scenes(arch):
    data = load_benchmark("scenes", n_train=8, n_test=4, size=12)
    model = build_default(arch, data, width=4, depth=1)
    out = model(data.splits["segment"].train_x[:3])
    assert tuple(out["segment"].shape) == (3, 3, 12, 12)
    assert tuple(out["depth"].shape) == (3, 1, 12, 12)
    assert tuple(out["count"].shape) == (3, 4)
    for t in data.tasks:
        loss = task_kind(t).loss(out[t.name], data.splits[t.name].train_y[:3])
        assert loss.ndim == 0 and torch.isfinite(loss)


def test_token_heads_score_every_position():
    n, length, d = 10, 7, 5
    x = torch.randn(n, length, d)
    tags = (x[..., 0] > 0).long() + (x[..., 1] > 0).long()
    sentiment = (x[..., 2].mean(1) > 0).long()
    tasks = (TaskSpec("tags", "token-ce", 3), TaskSpec("sentiment", "ce", 2))
    data = shared_inputs("tokens", tasks, x, {"tags": tags, "sentiment": sentiment}, x,
                         {"tags": tags, "sentiment": sentiment})
    model = build_architecture("hps", data, lambda: nn.Linear(d, 8))
    out = model(x)
    assert tuple(out["tags"].shape) == (n, length, 3)
    assert tuple(out["sentiment"].shape) == (n, 2)
    assert task_kind(tasks[0]).loss(out["tags"], tags).ndim == 0


@pytest.mark.parametrize("arch", ["mmoe", "cgc", "ple"])
def test_gates_are_inspectable_distributions(mtl, arch):
    data = mtl.toy_shared()
    model = build_default(arch, data, width=8)
    model(data.splits["a"].train_x[:9])
    assert model.gate_weights
    for key, g in model.gate_weights.items():
        assert g.shape[0] == 9 and not g.requires_grad, key
        assert bool((g >= 0).all())
        torch.testing.assert_close(g.sum(1), torch.ones(9))
    expected = {"mmoe": {"a", "b", "c"}, "cgc": {"a/0", "b/0", "c/0"},
                "ple": {"a/0", "b/0", "c/0", "shared/0", "a/1", "b/1", "c/1"}}[arch]
    assert set(model.gate_weights) == expected


def test_mmoe_gate_width_is_the_number_of_experts(mtl):
    data = mtl.toy_shared()
    model = build_architecture("mmoe", data, lambda: mtl.mlp(6, 4), n_experts=5)
    model(data.splits["a"].train_x[:2])
    assert model.gate_weights["a"].shape == (2, 5)


def test_cross_stitch_units_start_near_identity(mtl):
    data = mtl.toy_shared()
    model = build_architecture("cross_stitch", data, lambda: mtl.mlp(6, 8))
    for alpha in model.stitch_matrices():
        torch.testing.assert_close(alpha.diagonal(), torch.full((3,), 0.9))
        torch.testing.assert_close(alpha.sum(1), torch.ones(3))
        assert torch.allclose(alpha[~torch.eye(3, dtype=torch.bool)], torch.tensor(0.05))


def test_cross_stitch_with_identity_units_equals_separate_networks(mtl):
    data = mtl.toy_shared()
    factory = lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())  # noqa: E731
    model: CrossStitch = build_architecture("cross_stitch", data, factory, self_weight=1.0)
    assert len(model.stages) == 2  # stitched after each hidden layer's activation
    x = data.splits["a"].train_x[:4]
    out = model(x)
    for i, (task, head) in enumerate(model.heads.items()):
        h = x
        for stage in model.stages:
            h = stage[i](h)
        torch.testing.assert_close(out[task], head(h))


def test_cross_stitch_rejects_non_sequential_backbones(mtl):
    with pytest.raises(ConfigError, match="nn.Sequential"):
        build_architecture("cross_stitch", mtl.toy_shared(), lambda: nn.Linear(6, 4))


def test_soft_sharing_penalties_match_hand_values():
    rows = torch.tensor([[1.0, 2.0], [3.0, 2.0], [1.0, 0.0]])
    # pairwise squared distances: (0-1) 4, (0-2) 4, (1-2) 4+4=8 → 16
    torch.testing.assert_close(l2_coupling(rows), torch.tensor(16.0))
    torch.testing.assert_close(trace_coupling(rows), torch.linalg.svdvals(rows).sum())


def test_soft_sharing_penalty_is_zero_for_identical_columns_and_couples_them(mtl):
    data = mtl.toy_shared()
    model = build_architecture("soft", data, lambda: mtl.mlp(6, 4), weight=0.5)
    first = model.columns["a"].state_dict()
    for t in ("b", "c"):
        model.columns[t].load_state_dict(first)
    assert abs(float(model.penalty().detach())) < 1e-10
    with torch.no_grad():
        model.columns["b"][0].bias += 1.0
    # column b's 4 biases moved by 1: pairs (a,b) and (b,c) are 4 apart, (a,c) 0 → 0.5 · 8
    torch.testing.assert_close(model.penalty(), torch.tensor(4.0))
    assert model.shared_parameters() == []


@pytest.mark.parametrize("coupling", ["l2", "trace"])
def test_soft_sharing_on_one_task_has_nothing_to_couple(mtl, coupling):
    """A single-task baseline (diagnose's Δm) trains unregularised: the trace norm of a 1 × n
    matrix would otherwise penalise the parameters' L2 norms."""
    data = mtl.toy_shared().select(["a"])
    model = build_architecture("soft", data, lambda: mtl.mlp(6, 4), coupling=coupling, weight=0.5)
    assert float(model.penalty()) == 0.0


def test_ple_needs_upper_experts_when_experts_change_the_shape(mtl):
    with pytest.raises(ConfigError, match="upper_expert"):
        build_architecture("ple", mtl.toy_shared(), lambda: mtl.mlp(6, 4), levels=2)


def test_unknown_architecture_names_the_close_match():
    with pytest.raises(KeyError, match="mmoe"):
        ARCHITECTURES.get("mmeo")


def test_heads_follow_the_task_kinds():
    data = load_benchmark("scenes", n_train=4, n_test=2, size=8)
    heads = build_heads(data, (5, 8, 8))
    z = torch.randn(2, 5, 8, 8)
    assert tuple(heads["segment"](z).shape) == (2, 3, 8, 8)
    assert tuple(heads["count"](z).shape) == (2, 4)


@pytest.mark.parametrize(("arch", "args", "why"), [
    ("mmoe", {"n_experts": "abc"}, "MMoE n_experts must be a positive integer, got 'abc'"),
    ("mmoe", {"n_experts": 0}, "MMoE n_experts must be a positive integer, got 0"),
    ("ple", {"levels": None}, "PLE: levels must be a positive integer"),
    ("ple", {"n_shared": 1.5}, "PLE: n_shared must be a positive integer"),
    ("cgc", {"n_specific": "x"}, "n_specific must be a positive integer"),
    ("cross_stitch", {"self_weight": "x"}, "cross-stitch: self_weight must be a number"),
    ("cross_stitch", {"stitch_after": 2}, "cross-stitch: stitch_after must be a list of child indices"),
    ("soft", {"coupling": ["l2"]}, "soft sharing: coupling"),
    ("soft", {"weight": "x"}, "soft sharing: weight must be a number"),
    ("hps", {"width": "abc"}, "multi-task trunk: width must be a positive integer"),
    ("hps", {"depth": -1}, "multi-task trunk: depth must be a positive integer"),
])
def test_architecture_arguments_of_the_wrong_type_are_named(arch, args, why):
    data = load_benchmark("multi-digits")
    width = {k: args.pop(k) for k in ("width", "depth") if k in args}
    with pytest.raises(ConfigError, match=why):
        build_default(arch, data, **width, **args)


def _token_data(vocab: int = 20, length: int = 6) -> MultiTaskData:
    """Token IDs (N, L) with a per-token tag (the ID mod 3) and a sentence label (first ID ≥ vocab / 2)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (240, length), generator=g)
    ys = {"tag": x % 3, "first": (x[:, 0] >= vocab // 2).long()}
    tasks = (TaskSpec("tag", "token-ce", 3), TaskSpec("first", "ce", 2))
    return shared_inputs("tagging", tasks, x[:200], {k: v[:200] for k, v in ys.items()}, x[200:],
                         {k: v[200:] for k, v in ys.items()})


def test_token_tagging_on_token_ids_with_an_embedding_trunk_trains():
    """Heads used to be sized by running the trunk on float zeros, which an nn.Embedding refuses."""
    data = _token_data()
    torch.manual_seed(0)
    model = build_architecture("hps", data, lambda: nn.Sequential(nn.Embedding(20, 16), nn.ReLU()))
    assert tuple(model(data.splits["tag"].test_x[:2])["tag"].shape) == (2, 6, 3)
    config = TrainConfig(epochs=4, batch_size=20, lr=0.05, optimizer="adam")
    trainer = MultiTaskTrainer(model, build_weighting("uniform", 2), data, config, torch.Generator().manual_seed(0))
    before = trainer.evaluate()["tag"]["accuracy"]
    history = trainer.fit()
    assert history[-1]["train_loss"]["tag"] < 0.5 * history[0]["train_loss"]["tag"]
    assert history[-1]["test"]["tag"]["accuracy"] > max(0.95, before + 0.3)


@pytest.mark.parametrize("arch", ["mmoe", "cgc", "ple"])
def test_gated_architectures_refuse_token_ids_before_training(arch):
    """Their gates are linear in the input: they used to fail inside torch on integer token IDs."""
    with pytest.raises(ConfigError, match="cannot read token IDs .* use an architecture without input gates"):
        build_architecture(arch, _token_data(), lambda: nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 8)))


def test_a_gate_given_integer_inputs_says_what_to_do():
    with pytest.raises(ConfigError, match=r"gate given inputs of dtype torch.int64: .* embed the tokens"):
        Gate(4, 2)(torch.zeros(3, 4, dtype=torch.long))


@pytest.mark.parametrize(("arch", "args"), [("cgc", {}), ("ple", {"levels": 1}),
                                            ("ple", {"levels": 2, "upper_expert": lambda: nn.Linear(8, 8)})])
def test_architectures_build_and_run_in_float64(mtl, arch, args):
    """Heads and gates were sized on float32 zeros, which a float64 model refuses (mat1 and mat2 dtypes)."""
    data = mtl.toy_shared()
    data = shared_inputs("f64", data.tasks, data.splits["a"].train_x.double(),
                         {t: s.train_y for t, s in data.splits.items()}, data.splits["a"].test_x.double(),
                         {t: s.test_y for t, s in data.splits.items()})
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = build_architecture(arch, data, lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU()), **args)
    finally:
        torch.set_default_dtype(default)
    out = model(data.splits["a"].train_x[:4])
    assert all(v.dtype == torch.float64 for v in out.values())
