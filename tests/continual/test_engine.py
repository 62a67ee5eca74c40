import pytest
import torch

from lifelong.continual.engine import Engine
from lifelong.continual.metrics import all_metrics
from lifelong.continual.plugin import Plugin
from lifelong.continual.strategies import build_strategy, composition_problems
from lifelong.core.errors import (
    ConfigError,
    IncompatibleError,
    NonFiniteLossError,
    ShapeMismatchError,
    UnknownNameError,
)
from lifelong.data.scenarios import build_benchmark
from lifelong.data.stream import Experience, Stream
from lifelong.models import build_model


def _engine(stream, strategy="naive", head="single", epochs=5, **kw):
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(),
                        head=head, hidden=(128,))
    return Engine(model, build_strategy(strategy), epochs=epochs, batch_size=32,
                  generator=torch.Generator().manual_seed(0), **kw)


@pytest.fixture(scope="module")
def streams():
    return {s: build_benchmark("split-digits", s) for s in ("task", "domain", "class")}


class Recorder(Plugin):
    """Records the order in which hooks are called."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def before_experience(self, ctx):
        self.calls.append(("before_experience", ctx.index))

    def extend_batch(self, ctx, batch):
        self.calls.append("extend_batch")
        return batch

    def loss_terms(self, ctx, batch, outputs):
        self.calls.append("loss_terms")
        return {"zero": outputs.sum() * 0}

    def add_grads(self, ctx, batch):
        self.calls.append("add_grads")

    def observe_grads(self, ctx, batch):
        self.calls.append("observe_grads")

    def after_backward(self, ctx, batch):
        self.calls.append("after_backward")

    def after_step(self, ctx, batch):
        self.calls.append("after_step")

    def after_experience(self, ctx):
        self.calls.append(("after_experience", ctx.index))


def test_hooks_run_in_documented_order(streams):
    rec = Recorder()
    engine = _engine(streams["class"][:2], epochs=1)
    engine.plugins = [rec]
    engine.batch_size = 10_000  # one batch per experience
    engine.run(streams["class"][:2])
    step = ["extend_batch", "loss_terms", "add_grads", "observe_grads", "after_backward", "after_step"]
    assert rec.calls == [("before_experience", 0), *step, ("after_experience", 0),
                         ("before_experience", 1), *step, ("after_experience", 1)]


def test_matrix_has_untrained_row_and_learning_happens(streams):
    R = _engine(streams["task"]).run(streams["task"])
    assert len(R) == 6 and all(len(r) == 5 for r in R)
    m = all_metrics(R)
    assert m["acc"] > 0.9 and m["learning_accuracy"] > 0.9
    # before training, task-IL accuracy is near chance (0.5 for two classes)
    assert sum(R[0]) / 5 < 0.8


def test_task_incremental_far_above_class_incremental(streams):
    task = all_metrics(_engine(streams["task"]).run(streams["task"]))
    cls = all_metrics(_engine(streams["class"]).run(streams["class"]))
    assert cls["acc"] < 0.3 and cls["bwt"] < -0.6  # catastrophic forgetting
    assert task["acc"] > cls["acc"] + 0.5


def test_cumulative_and_joint_do_not_forget(streams):
    for strategy in ("cumulative", "joint"):
        m = all_metrics(_engine(streams["class"], strategy).run(streams["class"]))
        assert m["acc"] > 0.85 and m["bwt"] > -0.1, strategy


def test_multi_head_and_incremental_head(streams):
    R = _engine(streams["task"], head="multi").run(streams["task"])
    assert all_metrics(R)["acc"] > 0.9
    engine = _engine(streams["class"], "cumulative", head="incremental")
    R = engine.run(streams["class"])
    assert engine.model.head.out_features == 10 and all_metrics(R)["acc"] > 0.85


def test_an_incremental_head_grows_in_its_own_dtype_keeping_its_rows():
    from lifelong.models.heads import IncrementalHead

    head = IncrementalHead(4, 10, []).double()
    head.adapt([0, 1])
    rows = head.weight.detach().clone()
    assert head.weight.dtype == torch.float64
    assert head.adapt([0, 1, 2, 3]) and head.weight.shape == (4, 4)
    assert head.weight.dtype == head.bias.dtype == torch.float64
    assert torch.equal(head.weight[:2].detach(), rows)


def test_multi_head_selects_each_samples_head_deterministically_with_threads():
    """Each row takes its task's head (other classes 0), and the backward pass gives the same
    gradient every time with 2 threads and a large mixed batch (a gather of weight rows did not)."""
    from lifelong.models.heads import MultiHead

    torch.manual_seed(0)
    head = MultiHead(64, 10, [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)])
    h, t = torch.randn(512, 64), torch.randint(0, 5, (512,))
    out = head(h, t)
    expected = torch.stack([h[i] @ head.weight[t[i]].T + head.bias[t[i]] for i in range(4)]) * head.mask[t[:4]]
    torch.testing.assert_close(out[:4], expected)
    assert out[t == 0][:, 2:].eq(0).all() and out[t == 4][:, :8].eq(0).all()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False)  # as in a real run (the test suite turns it on)
    try:
        grads = set()
        same_task = torch.zeros(64, dtype=torch.long)  # a task-IL training batch: one head, many rows
        y = torch.randint(0, 2, (64,))
        for _ in range(100):
            head.zero_grad()
            torch.nn.functional.cross_entropy(head(h[:64], same_task), y).backward()
            grads.add(head.weight.grad.numpy().tobytes())
    finally:
        torch.set_num_threads(threads)
    assert len(grads) == 1


def test_compatibility_checked_before_training(streams):
    with pytest.raises(IncompatibleError, match="multi-head"):
        _engine(streams["class"], head="multi").run(streams["class"])

    class NeedsTasks(Plugin):
        name = "needs"
        needs_task_labels = True

    engine = _engine(streams["domain"])
    engine.plugins = [NeedsTasks()]
    with pytest.raises(IncompatibleError, match="needs task labels"):
        engine.run(streams["domain"])
    assert engine.matrix == []  # nothing ran


@pytest.mark.parametrize("spec", ["prototypes+cumulative", "cumulative+prototypes", "prototypes+joint"])
def test_a_frozen_prototypes_model_is_not_trained_by_a_strategy_choosing_the_data(streams, spec):
    """prototypes(freeze=True) keeps the encoder frozen by training on no data; a strategy whose
    `train_data` replaces the data would train it after all (24 steps), so the pair is refused."""
    engine = _engine(streams["class"], spec)
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    with pytest.raises(IncompatibleError, match=r"'prototypes' keep the model frozen .* freeze=False"):
        engine.run(streams["class"])
    assert engine.matrix == [] and engine.step == 0
    assert all(torch.equal(before[k], v) for k, v in engine.model.state_dict().items())
    trains = build_strategy(spec, {"prototypes": {"freeze": False}})
    assert composition_problems(trains) == []  # an encoder that trains may take the data they choose


def _tiny_stream(x_dtype=torch.float32):
    """Two tasks of 8 five-feature rows, classes (0, 1) then (2, 3)."""
    g = torch.Generator().manual_seed(0)
    parts = [(torch.randn(8, 5, generator=g, dtype=x_dtype), torch.tensor([c, c + 1] * 4)) for c in (0, 2)]
    return Stream(tuple(Experience(i, x, y, x, y, (2 * i, 2 * i + 1), i) for i, (x, y) in enumerate(parts)),
                  "task", 4)


@pytest.mark.parametrize(("model", "why"), [
    (torch.nn.Linear(7, 4), r"fails on inputs of per-sample shape \(5,\) and dtype torch.float32"),
    (torch.nn.Linear(5, 4).double(), r"fails on inputs of per-sample shape \(5,\) and dtype torch.float32"),
    (torch.nn.Linear(5, 3), r"the model gives 3 outputs but stream 'custom' has 4 classes"),
])
def test_check_refuses_a_model_that_does_not_fit_the_stream(model, why):
    """A model built for other inputs (shape or dtype) or narrower than the stream's classes fails in
    `check`, before training, with a ShapeMismatchError (the torch error chained), not inside torch."""
    stream = _tiny_stream()
    engine = Engine(model, build_strategy("naive"))
    with pytest.raises(ShapeMismatchError, match=why) as caught:
        engine.run(stream)
    assert engine.matrix == [] and model.training
    assert why.startswith("the model gives") or isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize("head", ["single", "multi", "incremental"])
def test_check_runs_the_model_once_without_changing_it(head):
    """Fixed single and multi heads (given task labels) score every class; a growing head may start narrower
    (empty); a float64 stream fits a float64 model. The probe leaves the weights, statistics and mode as they were."""
    stream = _tiny_stream(torch.float64)
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(), head=head,
                        hidden=(6,))
    model.backbone.net.append(torch.nn.BatchNorm1d(6))  # running statistics a training-mode probe would move
    model.double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Engine(model, build_strategy("naive")).check(stream)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_non_finite_loss_names_the_term(streams):
    class Exploding(Plugin):
        name = "boom"

        def loss_terms(self, ctx, batch, outputs):
            return {"penalty": outputs.sum() * float("nan")}

    engine = _engine(streams["class"])
    engine.plugins = [Exploding()]
    with pytest.raises(NonFiniteLossError, match=r"boom\.penalty"):
        engine.run(streams["class"])


def test_strategy_specs():
    assert [p.name for p in build_strategy("cumulative+naive")] == ["cumulative"]
    assert build_strategy("naive")[0].name == "naive"
    with pytest.raises(UnknownNameError, match="naive"):
        build_strategy("naiv")
    with pytest.raises(ConfigError):
        build_strategy("naive", {"lambda": 3})
    with pytest.raises(ConfigError, match="groups"):
        build_strategy("naive+cumulative", {"ewc": {}})


@pytest.mark.parametrize(("args", "why"), [
    ({"batch_size": 0}, "engine: batch_size must be a positive integer, got 0"),
    ({"epochs": -1}, "engine: epochs must be a positive integer"),
    ({"eval_batch_size": "big"}, "engine: eval_batch_size must be a positive integer"),
    ({"lr": -0.1}, "engine: lr must be a finite number ≥ 0"),
    ({"lr": float("nan")}, "engine: lr must be a finite number ≥ 0"),
])
def test_engine_settings_out_of_range_are_named(args, why):
    model = build_model("mlp", (1, 8, 8), 4, [[0, 1], [2, 3]], hidden=(8,))
    with pytest.raises(ConfigError, match=why):
        Engine(model, **args)


def test_check_probes_every_task_of_a_multi_head_model_and_the_task_settings_width():
    """A multi-head model with heads for 3 of the stream's 5 tasks failed inside torch at the 4th
    experience; a model wider than the stream's classes broke the task setting's class mask."""
    stream = build_benchmark("split-digits", "task")
    few_heads = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes()[:3], head="multi",
                            hidden=(8,))
    with pytest.raises(ShapeMismatchError, match="task 3: the model fails"):
        Engine(few_heads, build_strategy("naive")).run(stream)
    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 12))
    with pytest.raises(ShapeMismatchError, match="gives 12 outputs but stream 'split-digits' has 10 classes"):
        Engine(wide, build_strategy("naive")).run(stream)
    Engine(wide, build_strategy("naive"), epochs=1).check(build_benchmark("split-digits", "class"))  # harmless there
