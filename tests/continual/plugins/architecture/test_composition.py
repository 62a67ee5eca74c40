"""Architecture strategies with the others: the model's structure is settled first and routed last
whatever the spec's order, and what cannot work together is refused before training."""

from __future__ import annotations

import pytest
import torch

from lifelong.continual.strategies import build_strategy, composition_problems
from lifelong.core.errors import ConfigError, IncompatibleError

SMALL = {"replay": {"buffer_size": 60}, "packnet": {"retrain_epochs": 1}, "gem": {"patterns_per_experience": 20}}


def trained(arch, spec: str, head: str = "multi") -> tuple[list[list[float]], dict[str, torch.Tensor]]:
    """The accuracy matrix and final parameters of `spec` on three digits tasks."""
    stream = arch.digits(n=3)
    names = [p for p in spec.split("+")]
    plugins = build_strategy(spec, {n: SMALL[n] for n in names if n in SMALL})
    eng = arch.engine(arch.mlp(stream, (16,), head=head), plugins, batch_size=32)
    return eng.run(stream), arch.snapshot(eng.model.named_parameters())


@pytest.mark.parametrize(("first", "second"), [("hat+replay", "replay+hat"), ("hat+si", "si+hat"),
                                               ("packnet+si", "si+packnet"), ("progressive+der", "der+progressive"),
                                               ("packnet+gem", "gem+packnet"), ("hat+cumulative", "cumulative+hat")])
def test_the_spec_order_of_an_architecture_strategy_does_not_matter(arch, first, second):
    """Structure first (install, grow, prune before an anchor is taken), routing and masking last
    (after the data and batch are chosen, after GEM's projection): both orders train the very same
    model (HAT anneals its gates over the cumulative data in either order)."""
    (m1, p1), (m2, p2) = trained(arch, first), trained(arch, second)
    assert m1 == m2 and arch.identical(p1, p2)


@pytest.mark.parametrize(("spec", "why"), [
    ("ewc+hat", "'ewc' run the model on inputs of their own"),
    ("icarl+progressive", "'icarl' run the model on inputs of their own"),
    ("gem+adapters", "'gem' run the model on inputs of their own"),
    ("curriculum+hat", "'curriculum' run the model on inputs of their own"),
    ("si+adapters", "'si' keep a penalty over the model's parameters, but 'adapters' adds new parameter"),
    ("mas+progressive", "'mas' run the model"),
    ("lwf+hat", "'lwf' run the model on inputs of their own"),  # multi-head: once per old head
    ("icarl+packnet", "'icarl' and 'packnet' each define how the model predicts"),
    ("curriculum+self-paced", "'curriculum' and 'self-paced' each set the order of every epoch"),
])
def test_what_cannot_work_together_is_refused_before_training(arch, spec, why):
    stream = arch.digits(n=2)
    model = arch.mlp(stream, (16,), head="multi")
    before = arch.snapshot(model.named_parameters())
    eng = arch.engine(model, build_strategy(spec))
    with pytest.raises(IncompatibleError, match=why):
        eng.run(stream)
    assert eng.matrix == [] and arch.identical(before, arch.snapshot(model.named_parameters()))


@pytest.mark.parametrize("spec", ["ewc+ewc", "replay+er", "lwf + learning_without_forgetting"])
def test_a_strategy_named_twice_is_refused(spec):
    with pytest.raises(ConfigError, match="more than once"):
        build_strategy(spec)


def test_arguments_grouped_under_a_name_and_its_alias_are_refused():
    """{'replay': {...}, 'er': {...}} would keep one group and silently drop the other."""
    with pytest.raises(ConfigError, match="grouped under both 'replay' and 'er'"):
        build_strategy("replay+ewc", {"replay": {"weight": 2.0}, "er": {"buffer_size": 10}})
    (replay, _) = build_strategy("replay+ewc", {"er": {"buffer_size": 10, "weight": 2.0}})
    assert (replay.buffer.capacity, replay.weight) == (10, 2.0)


def test_a_scorer_that_needs_no_model_lets_a_curriculum_combine_with_routing():
    plugins = build_strategy("curriculum+hat", {"curriculum": {"scorer": "precomputed",
                                                               "scorer_args": {"scores": torch.zeros(10)}}})
    assert composition_problems(plugins) == []


def test_lwf_runs_with_a_routed_architecture_on_a_single_head():
    assert composition_problems(build_strategy("lwf+hat")) == []
    assert composition_problems(build_strategy("lwf+hat"), multi_head=True) != []


def test_packnet_keeps_its_frozen_weights_under_gems_projection(arch):
    """Masking runs after the projection whatever the order, so weights an earlier task owns never move."""
    stream = arch.digits(n=2)
    packnet, gem = build_strategy("packnet+gem", {"packnet": SMALL["packnet"], "gem": SMALL["gem"]})
    eng = arch.engine(arch.mlp(stream, (16,), head="multi"), [packnet, gem], batch_size=32)
    arch.train_one(eng, stream, 0)
    owned = {n: o == 1 for n, o in packnet.owners.items()}
    before = {n: p.detach()[owned[n]].clone() for n, p in eng.model.named_parameters() if n in owned}
    arch.train_one(eng, stream, 1)
    for n, p in eng.model.named_parameters():
        if n in owned:
            assert torch.equal(p.detach()[owned[n]], before[n]), n
