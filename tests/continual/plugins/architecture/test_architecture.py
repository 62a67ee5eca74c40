"""What every architecture strategy must do: no forgetting on Split Fashion-MNIST, class-incremental
evaluation by entropy-based task inference, and refusing what it cannot handle. (Bit-exact resume is
tested for every strategy in tests/continual/test_every_strategy.py.)"""

import itertools
import re

import pytest
import torch

from lifelong.continual.metrics import backward_transfer
from lifelong.continual.strategies import build_strategy
from lifelong.continual.task_identity import infer_by_entropy, slot_classes
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.data.scenarios import split
from lifelong.data.sources.base import subsample

ALL = [n for n in STRATEGIES.names() if STRATEGIES.meta(n)["family"] == "architecture"]
ZERO_FORGETTING = [n for n in ALL if STRATEGIES.meta(n)["forgetting"] in ("None", "Very Low")]
ROUTED = [n for n in ALL if hasattr(build_strategy(n)[0], "router")]  # those that rebuild the Classifier
PROTOCOL = {"epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def fashion_task(fashion):
    """Split Fashion-MNIST, task-incremental: 5 experiences of ~2000 training / 400 test samples."""
    return split(subsample(fashion, 10_000, 2_000), "task")


@pytest.fixture(scope="module")
def alone(arch, fashion_task):
    """Accuracy the same MLP 784-100-100 reaches on each task trained alone."""
    accs = []
    for i in range(len(fashion_task)):
        one = fashion_task[i:i + 1]
        eng = arch.engine(arch.mlp(one, (100, 100)), build_strategy("naive"), **PROTOCOL)
        accs.append(eng.run(one)[1][0])
    return accs


@pytest.mark.parametrize("strategy", ZERO_FORGETTING)
def test_no_forgetting_and_each_task_as_good_as_alone(arch, fashion_task, alone, strategy):
    eng = arch.engine(arch.mlp(fashion_task, (100, 100)), build_strategy(strategy), **PROTOCOL)
    R = eng.run(fashion_task)
    assert backward_transfer(R) >= -0.01
    for i, reference in enumerate(alone):
        assert R[-1][i] >= reference - 0.05, (i, R[-1][i], reference)
    assert min(alone) > 0.85  # the tasks are learnt at all


def test_the_protocol_makes_naive_forget(arch, fashion_task):
    """Negative control: the same protocol without a strategy forgets, so the bounds above can fail."""
    R = arch.engine(arch.mlp(fashion_task, (100, 100)), build_strategy("naive"), **PROTOCOL).run(fashion_task)
    assert backward_transfer(R) < -0.05


def _slot_logits(eng, ctx, x, label):
    """One task's scores as the engine evaluates them when the task label is given."""
    plugin = eng.plugins[0]
    plugin.infer_task = False
    try:
        return eng.predict(ctx, x, torch.full((x.shape[0],), label, dtype=torch.long))
    finally:
        plugin.infer_task = True


@pytest.mark.parametrize("strategy", ALL)
def test_class_incremental_scores_come_from_the_lowest_entropy_task(arch, strategy):
    stream = arch.digits("class", n=2)
    plugin = build_strategy(strategy, {"infer_task": True})[0]
    assert "class" in plugin.settings and not plugin.needs_task_labels
    assert "class" not in build_strategy(strategy)[0].settings
    eng = arch.engine(arch.mlp(stream, (32,)), [plugin], epochs=5)
    eng.run(stream)
    ctx = eng.context(stream, 1)
    x = torch.cat([stream[0].test_x, stream[1].test_x])
    t = torch.zeros(x.shape[0], dtype=torch.long)  # ignored: the task is inferred
    with torch.no_grad():
        logits = torch.stack([_slot_logits(eng, ctx, x, label) for label in plugin.slots.labels])
        expected = infer_by_entropy(logits, slot_classes(ctx, plugin.slots.labels)[:, : logits.shape[2]])
        scores = plugin.predict(ctx, x, t)
    assert torch.allclose(scores, expected, atol=1e-5)  # one batched forward vs one forward per slot
    assert torch.equal(scores.argmax(1), expected.argmax(1))


def test_the_lists_come_from_the_registry():
    assert set(ZERO_FORGETTING) == {"progressive", "packnet", "hat", "adapters", "lora"}
    assert set(ALL) == {*ZERO_FORGETTING, "den"} and set(ROUTED) == set(ALL) - {"packnet"}


@pytest.mark.parametrize("strategy", ROUTED)
def test_a_model_that_is_not_a_classifier_is_refused(arch, strategy):
    stream = arch.digits(n=1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, stream.n_classes))
    with pytest.raises(IncompatibleError, match="lifelong.models.build_model"):
        arch.engine(model, build_strategy(strategy)).run(stream)


@pytest.mark.parametrize("pair", list(itertools.combinations(ALL, 2)), ids="+".join)
def test_two_architecture_strategies_are_refused(pair):
    with pytest.raises(IncompatibleError, match=re.escape(f"combines the architecture strategies {list(pair)}")):
        build_strategy("+".join(pair))
    assert [p.name for p in build_strategy(f"replay+{pair[0]}")] == ["replay", pair[0]]
