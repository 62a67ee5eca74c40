"""What every architecture strategy must do: no forgetting on Split Fashion-MNIST, bit-exact resume,
and class-incremental evaluation by entropy-based task inference."""

import itertools
import re
import shutil

import pytest
import torch

import lifelong.continual.run as run_module
from lifelong.continual.metrics import backward_transfer
from lifelong.continual.run import run
from lifelong.continual.strategies import build_strategy
from lifelong.continual.task_identity import infer_by_entropy, slot_classes
from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.config import RunConfig
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


class Interrupt(Exception):
    pass


def _config(tmp_path, folder, strategy, seed=0):
    name, args = strategy
    return RunConfig(benchmark="split-digits", scenario="task", strategy=name, strategy_args=args,
                     model_args={"hidden": [32]}, epochs=3, batch_size=32, seed=seed, out=str(tmp_path / folder),
                     name="r")


@pytest.mark.parametrize("strategy", [*((s, {}) for s in ALL), ("lora", {"backend": "peft"})],
                         ids=[*ALL, "lora-peft"])
def test_resume_through_run_is_bit_exact(tmp_path, monkeypatch, strategy):
    full = run(_config(tmp_path, "full", strategy))
    full_state = load_checkpoint(tmp_path / "full" / "r" / "checkpoint.pt")[0]
    real, saves = run_module.save_checkpoint, []

    def save(*args, **kwargs):
        real(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise Interrupt

    monkeypatch.setattr(run_module, "save_checkpoint", save)
    with pytest.raises(Interrupt):
        run(_config(tmp_path, "cut", strategy))
    monkeypatch.undo()
    mid_state = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")[0]
    shutil.copytree(tmp_path / "cut" / "r", tmp_path / "other" / "r")
    resumed = run(_config(tmp_path, "cut", strategy), resume=True)
    resumed_state = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")[0]

    assert mid_state["next_experience"] == 2
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]
    assert resumed_state["model"].keys() == full_state["model"].keys()
    assert all(torch.equal(v, resumed_state["model"][k]) for k, v in full_state["model"].items())
    assert resumed["parameters"] == full["parameters"]
    # negative controls: the checkpoint really moved on (grown, or changed where nothing is frozen),
    # and another generator state changes the numbers
    final = full_state["model"]
    assert mid_state["model"].keys() != final.keys() or any(
        v.shape != final[k].shape or not torch.equal(v, final[k]) for k, v in mid_state["model"].items())
    ckpt = tmp_path / "other" / "r" / "checkpoint.pt"
    state, saved = load_checkpoint(ckpt)
    state["generator"] = torch.Generator().manual_seed(99).get_state()
    save_checkpoint(ckpt, state, saved)
    assert run(_config(tmp_path, "other", strategy), resume=True)["accuracy_matrix"] != full["accuracy_matrix"]


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
