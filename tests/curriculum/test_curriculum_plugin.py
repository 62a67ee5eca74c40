"""The curriculum strategies in the continual engine: the epoch is restricted to the easiest fraction."""

import copy

import pytest
import torch
import torch.nn.functional as F

import lifelong.curriculum  # noqa: F401  (registers the strategies)
from lifelong.continual.engine import Engine
from lifelong.continual.plugin import TrainData
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import ConfigError, IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.curriculum.pacing import Linear
from lifelong.curriculum.plugin import CurriculumPlugin, SelfPacedPlugin, context_forward
from lifelong.data.scenarios import build_benchmark
from lifelong.data.stream import Experience, Stream
from lifelong.models import build_model

N = 40


def one_experience_stream() -> Stream:
    x = torch.randn(N, 1, 2, 2)
    y = torch.arange(N) % 2
    return Stream((Experience(0, x, y, x[:8], y[:8], (0, 1), 0),), "class", 2)


def engine_for(stream: Stream, plugins, epochs: int = 1, batch_size: int = 8, hidden: int = 16) -> Engine:
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(),
                        hidden=(hidden,))
    return Engine(model, plugins, epochs=epochs, batch_size=batch_size,
                  generator=torch.Generator().manual_seed(0))


def data_of(stream: Stream) -> TrainData:
    e = stream[0]
    return TrainData(e.train_x, e.train_y, e.train_t())


def test_registered_with_family_and_aliases():
    assert STRATEGIES.meta("curriculum")["family"] == "curriculum"
    assert STRATEGIES.canonical("spl") == "self-paced"
    assert isinstance(STRATEGIES.build("curriculum", pacing="linear", pacing_args={"c0": 0.5}),
                      CurriculumPlugin)
    with pytest.raises(ConfigError, match="unknown keys"):
        STRATEGIES.build("curriculum", pacing_args={"slope": 1})
    with pytest.raises(ConfigError, match="unit"):
        CurriculumPlugin(unit="batch")
    pacing = Linear(c0=0.5)
    assert CurriculumPlugin(pacing=pacing).curriculum.pacing is pacing  # built objects pass through
    with pytest.raises(ConfigError, match="registered name"):
        CurriculumPlugin(pacing=pacing, pacing_args={"c0": 0.1})


@pytest.mark.parametrize(("anti", "epoch", "expected"), [
    (False, 0, range(10)), (False, 2, range(25)), (False, 4, range(40)),
    (True, 0, range(30, 40)), (True, 2, range(15, 40)),
])
def test_epoch_order_is_the_easiest_fraction(anti, epoch, expected):
    stream = one_experience_stream()
    plugin = CurriculumPlugin(scorer="precomputed", scorer_args={"scores": torch.arange(N).float()},
                              pacing="linear", pacing_args={"c0": 0.25}, total=4, unit="epoch", anti=anti,
                              balanced=False)
    engine = engine_for(stream, [plugin], epochs=5)
    ctx = engine.context(stream, 0)
    plugin.before_experience(ctx)
    order = plugin.epoch_order(ctx.advance(epoch=epoch), data_of(stream))
    assert sorted(order.tolist()) == list(expected)  # fraction 0.25 + 0.75·epoch/4 of the easiest


def test_engine_visits_only_the_allowed_examples_by_epochs():
    """40 examples, batch 8, linear c0 = 0.25 over 2 of 3 epochs: 10, 25 then 40 examples → 2 + 4 + 5 steps."""
    stream = one_experience_stream()
    plugin = build_strategy("curriculum", {"scorer": "loss", "pacing": "linear", "unit": "epoch",
                                           "pacing_args": {"c0": 0.25}, "total": 2})
    engine = engine_for(stream, plugin, epochs=3)
    engine.run(stream)
    assert engine.step == 2 + 4 + 5


def test_step_unit_draws_each_batch_from_the_fraction_allowed_at_its_step():
    """Scores 0..39 (row i is the i-th easiest), batch 8, linear c0 = 0.25 over 10 steps; the epoch from
    step 5 of the experience is 5 batches drawn from the easiest 25, 28, 31, 34 and 37 rows
    (0.25 + 0.75·t/10 of 40); uniformly: over 400 such epochs every allowed row comes up, each
    about equally often."""
    stream = one_experience_stream()
    plugin = CurriculumPlugin(scorer="precomputed", scorer_args={"scores": torch.arange(N).float()},
                              pacing="linear", pacing_args={"c0": 0.25}, total=10, balanced=False)
    engine = engine_for(stream, [plugin], epochs=3)
    engine.step = 100  # steps of earlier experiences do not count
    ctx = engine.context(stream, 0)
    plugin.before_experience(ctx)
    orders = torch.stack([plugin.epoch_order(ctx.advance(step=105), data_of(stream)) for _ in range(400)])
    batches = orders.view(400, 5, 8)
    for b, allowed in enumerate((25, 28, 31, 34, 37)):
        assert int(batches[:, b].max()) == allowed - 1 and int(batches[:, b].min()) == 0
    counts = torch.bincount(batches[:, 0].reshape(-1), minlength=N)[:25].double()
    assert float(counts.std() / counts.mean()) < 0.15  # 128 draws per row: a uniform draw's spread is 0.09


def test_default_paces_half_of_each_experience_by_steps():
    """Unset, the curriculum lasts half the experience: 40 rows in batches of 8 for 2 epochs are 10
    steps, so the batch at step t draws from the easiest 0.25 + 0.75·t/5 (linear c0 = 0.25), and
    from step 5 on from all the data; every epoch takes as many steps as a plain one."""
    stream = one_experience_stream()
    plugin = CurriculumPlugin(scorer="precomputed", scorer_args={"scores": torch.arange(N).float()},
                              pacing="linear", pacing_args={"c0": 0.25}, balanced=False)
    engine = engine_for(stream, [plugin], epochs=2)
    ctx = engine.context(stream, 0)
    plugin.before_experience(ctx)
    first = torch.stack([plugin.epoch_order(ctx, data_of(stream)) for _ in range(200)]).view(200, 5, 8)
    second = torch.stack([plugin.epoch_order(ctx.advance(epoch=1, step=5), data_of(stream))
                          for _ in range(200)]).view(200, 5, 8)
    assert [int(first[:, b].max()) + 1 for b in range(5)] == [10, 16, 22, 28, 34]
    assert [int(second[:, b].max()) + 1 for b in range(5)] == [40] * 5
    engine.run(stream)
    assert engine.step == 10


@pytest.mark.parametrize(("args", "epochs", "why"), [
    ({"unit": "epoch"}, 1, "one epoch cannot be paced by epochs; use unit='step' or more epochs"),
    ({"unit": "epoch", "total": 5}, 5, r"total=5 epochs, but an experience trains for 5 .* set total <= 4"),
    ({"total": 12}, 2, r"total=12 steps, but an experience trains for 10 .* set total <= 9"),
    ({"total": 1}, 1, "one step cannot be paced by steps; use more epochs or a smaller batch_size"),
])
def test_a_curriculum_that_would_never_reach_the_hardest_examples_is_refused_before_training(args, epochs, why):
    """By epochs before the run; by steps, whose count depends on the data the experience trains on
    (joint's or cumulative's), when the experience starts, before its first step."""
    stream = one_experience_stream()
    engine = engine_for(stream, [CurriculumPlugin(**args)], epochs=epochs, batch_size=64 if epochs == 1 else 8)
    with pytest.raises(IncompatibleError if args.get("unit") == "epoch" else ConfigError, match=why):
        engine.run(stream)
    assert engine.step == 0


@pytest.mark.parametrize("spec", ["curriculum+joint", "curriculum+cumulative"])
def test_steps_are_counted_on_the_data_the_experience_trains_on(spec):
    """Four experiences of 16 rows in batches of 16: one step each alone, but joint trains once on all
    64 rows (4 steps) and cumulative on 16, 32, 48, 64 (1 + 2 + 3 + 4 steps), paced where an
    experience has more than one step (it was refused before the run: total=3 > 0 steps); a single
    step has nothing to pace and trains on all its data."""
    x = torch.randn(64, 1, 2, 2)
    y = torch.arange(64) % 2
    stream = Stream(tuple(Experience(i, x[16 * i:16 * i + 16], y[16 * i:16 * i + 16], x[:8], y[:8], (0, 1), 0)
                          for i in range(4)), "domain", 2)
    engine = engine_for(stream, build_strategy(spec, {"curriculum": {"total": 1}}), batch_size=16)
    if spec.endswith("joint"):
        engine.run(stream)
        assert engine.step == 4
    else:
        with pytest.raises(ConfigError, match="one step cannot be paced"):  # an explicit total asks for pacing
            engine.run(stream)
        unset = engine_for(stream, build_strategy(spec), batch_size=16)
        unset.run(stream)
        assert unset.step == 1 + 2 + 3 + 4


def test_balanced_plugin_keeps_both_classes():
    stream = one_experience_stream()
    scores = torch.where(stream[0].train_y == 1, 10.0, 0.0) + torch.arange(N) / N  # class 1 hard
    plugin = CurriculumPlugin(scorer="precomputed", scorer_args={"scores": scores},
                              pacing="linear", pacing_args={"c0": 0.5}, total=4, unit="epoch")
    engine = engine_for(stream, [plugin], epochs=5)
    ctx = engine.context(stream, 0)
    plugin.before_experience(ctx)
    order = plugin.epoch_order(ctx, data_of(stream))
    assert torch.bincount(stream[0].train_y[order]).tolist() == [10, 10]


def test_scores_use_the_engine_forward_and_task_mask():
    stream = build_benchmark("split-digits", "task")[:2]
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(),
                        head="multi", hidden=(16,))
    engine = Engine(model, [], generator=torch.Generator().manual_seed(0))
    ctx = engine.context(stream, 1)
    e = stream[1]
    plugin = CurriculumPlugin(scorer="loss")
    forward = context_forward(ctx, TrainData(e.train_x, e.train_y, e.train_t()))
    scores = plugin.curriculum.periodic.scorer(model, e.train_x, e.train_y, forward)
    with torch.no_grad():
        model.eval()
        expected = F.cross_entropy(ctx.mask(model(e.train_x, e.train_t()), e.train_t()), e.train_y,
                                   reduction="none")
    assert torch.allclose(scores, expected, atol=1e-5)


def test_self_paced_plugin_selects_below_lambda():
    stream = one_experience_stream()
    plugin = SelfPacedPlugin()
    engine = engine_for(stream, [plugin], epochs=2)
    ctx = engine.context(stream, 0)
    plugin.before_experience(ctx)
    data = data_of(stream)
    losses = plugin.scorer(ctx.model, data.x, data.y)
    order = plugin.epoch_order(ctx, data)
    lam = float(torch.quantile(losses.double(), 0.5))
    assert sorted(order.tolist()) == (losses < lam).nonzero().flatten().tolist()
    assert plugin.selector.lam == pytest.approx(1.3 * lam)


def test_composes_with_other_strategies_and_learns():
    digits = build_benchmark("split-digits", "domain", n_experiences=1)
    args = {"curriculum": {"pacing": "competence", "pacing_args": {"c0": 0.2}, "total": 3, "unit": "epoch"}}
    assert [p.name for p in build_strategy("curriculum+naive", args)] == ["curriculum"]
    engine = engine_for(digits, build_strategy("curriculum+ewc", args), epochs=6, batch_size=32,
                        hidden=64)
    assert [p.name for p in engine.plugins] == ["curriculum", "ewc"]
    matrix = engine.run(digits)
    assert matrix[0][0] < 0.2 and matrix[1][0] > 0.85  # ten digit classes: chance is 0.1


@pytest.mark.parametrize("spec", ["curriculum", "self-paced"])
def test_resumes_bit_exactly_after_an_experience(spec):
    stream = build_benchmark("split-digits", "class", limit=(400, 100))[:3]

    def fresh() -> Engine:
        torch.manual_seed(0)
        return engine_for(stream, build_strategy(spec), epochs=2, batch_size=32)

    states = []
    whole = fresh()
    whole.run(stream, on_experience_end=lambda i, eng: states.append(copy.deepcopy(eng.state_dict())))
    resumed = fresh()
    resumed.load_state_dict(states[0])  # as if interrupted after the first experience
    resumed.run(stream)
    assert resumed.matrix == whole.matrix and resumed.step == whole.step
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(states[0]["model"]["head.weight"], states[1]["model"]["head.weight"])


def test_with_its_defaults_one_epoch_learns_about_as_much_as_plain_training():
    """Class-incremental Split Digits, one epoch per experience (the CLI's default): the default
    curriculum used to train each experience on its easiest 1% (3 of 251 rows: learning accuracy 0.05
    against naive's 0.54); paced by steps over half the experience, it visits as many rows as naive."""
    stream = build_benchmark("split-digits", "class")

    def learning_accuracy(spec: str) -> tuple[float, int]:
        torch.manual_seed(0)
        engine = engine_for(stream, build_strategy(spec), epochs=1, batch_size=8, hidden=32)
        matrix = engine.run(stream)
        return sum(matrix[i + 1][i] for i in range(len(stream))) / len(stream), engine.step

    (naive, naive_steps), (paced, paced_steps) = learning_accuracy("naive"), learning_accuracy("curriculum")
    assert paced_steps == naive_steps
    assert paced > 0.4 and paced > naive - 0.08


def test_self_paced_trains_on_every_example_in_an_experiences_last_epoch():
    """SPL ends with every example selected (Kumar et al. 2010): with one epoch it trained on the easiest
    half only (125 of 251 rows per experience); the last epoch now visits all of them, the others the
    examples below λ."""
    stream = one_experience_stream()
    seen = []
    engine = engine_for(stream, [SelfPacedPlugin()], epochs=3)
    order = engine._order

    def recorded(ctx, data):
        rows = order(ctx, data)
        seen.append(len(rows))
        return rows

    engine._order = recorded
    engine.run(stream)
    assert seen[-1] == N and seen[0] == N // 2 and len(seen) == 3
