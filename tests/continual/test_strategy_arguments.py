"""Strategy arguments of the wrong type or out of range are ConfigErrors naming them, before training."""

import pytest

from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError, UnknownNameError


@pytest.mark.parametrize(("spec", "args", "why"), [
    ("hat", {"infer_task": "false"}, "hat: infer_task must be true or false, got 'false'"),
    ("packnet", {"infer_task": 1}, "packnet: infer_task must be true or false"),
    ("progressive", {"infer_task": None}, "progressive: infer_task must be true or false"),
    ("den", {"infer_task": "yes"}, "den: infer_task must be true or false"),
    ("adapters", {"train_backbone_first": "no"}, "adapters: train_backbone_first must be true or false"),
    ("lora", {"infer_task": "x"}, "lora: infer_task must be true or false"),
    ("adapters", {"name": "x"}, r"unknown keys \['name'\]"),
    ("prototypes", {"freeze": "x"}, "prototypes: freeze must be true or false"),
    ("prototypes", {"batch_size": "abc"}, "prototypes: batch_size must be a positive integer"),
    ("prototypes", {"encoder": 3}, "prototypes: encoder must be a module"),
    ("curriculum", {"total": "abc"}, r"curriculum: total \(steps\) must be a number"),
    ("curriculum", {"rescore_every": float("nan")}, "curriculum: rescore_every must be a finite number"),
    ("curriculum", {"anti": "x"}, "curriculum: anti must be true or false"),
    ("curriculum", {"balanced": 0}, "curriculum: balanced must be true or false"),
    ("curriculum", {"scorer_args": [1]}, "arguments must be a mapping"),
    ("self-paced", {"mu": "x"}, "self-paced: mu must be a number"),
    ("self-paced", {"lam": float("nan")}, "self-paced: lam must be a finite number"),
    ("self-paced", {"start_fraction": None}, "self-paced: start_fraction must be a number"),
    ("replay", {"policy": ["ring"]}, "unknown policy"),
])
def test_bad_strategy_arguments_are_named(spec, args, why):
    with pytest.raises(ConfigError, match=why):
        build_strategy(spec, args)


def test_a_registered_thing_is_chosen_by_a_string():
    with pytest.raises(UnknownNameError, match="a scorer is chosen by name, a string; got 3. Known: .*loss"):
        build_strategy("curriculum", {"scorer": 3})
    with pytest.raises(ConfigError, match=r"a strategy spec is a string of names joined by '\+'.*got \['ewc'\]"):
        build_strategy(["ewc"])


def test_flags_take_real_booleans():
    assert build_strategy("hat", {"infer_task": True})[0].infer_task is True
    assert build_strategy("curriculum", {"anti": True, "balanced": False})[0].curriculum.anti is True
