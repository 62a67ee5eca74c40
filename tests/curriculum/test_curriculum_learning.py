"""Training helper and learning tests on real data (scikit-learn digits, 1257 training images)."""

import pytest
import torch

from lifelong.curriculum import (
    BabyStep,
    Linear,
    LossScorer,
    PacedCurriculum,
    SelfPaced,
    baby_step_order,
    compare_with_random,
    curriculum_order,
    focal_loss,
    inject_label_noise,
    random_order,
    self_paced_order,
    train_curve,
)
from lifelong.data.sources import SourceData, load_source
from lifelong.models import build_model


@pytest.fixture(scope="module")
def digits() -> SourceData:
    return load_source("digits")


def mlp(data: SourceData, hidden: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", data.input_shape, data.n_classes, [tuple(range(10))], hidden=(hidden,))


def with_noise(data: SourceData, fraction: float, seed: int) -> tuple[SourceData, torch.Tensor]:
    y, noisy = inject_label_noise(data.train_y, fraction, data.n_classes, torch.Generator().manual_seed(seed))
    return SourceData(data.name, data.train_x, y, data.test_x, data.test_y, data.class_names), noisy


def late_mean(curve) -> float:
    """Mean test accuracy over the evaluations in the second half of the budget."""
    late = [a for n, a in zip(curve.examples, curve.accuracy, strict=True) if n > curve.examples[-1] / 2]
    return sum(late) / len(late)


def test_label_noise_flips_exactly_the_fraction(digits):
    noisy_data, noisy = with_noise(digits, 0.3, 0)
    assert int(noisy.sum()) == round(0.3 * len(digits.train_y))
    assert bool((noisy_data.train_y[noisy] != digits.train_y[noisy]).all())
    assert torch.equal(noisy_data.train_y[~noisy], digits.train_y[~noisy])


def test_orderings_are_evaluated_at_the_same_example_counts(digits):
    n = len(digits.train_y)
    curriculum = PacedCurriculum(LossScorer(), Linear(c0=0.1), total=n)
    curves = [
        train_curve(mlp(digits, 32, 0), digits, order, budget=2 * n, batch_size=50, n_evals=7)
        for order in (random_order(n, torch.Generator()),
                      curriculum_order(curriculum, digits, torch.Generator()))
    ]
    assert curves[0].examples == curves[1].examples
    assert curves[0].examples[0] == 0 and curves[0].examples[-1] == 2 * n and len(curves[0].examples) == 8
    assert curves[1].fraction[1] < 0.6 and curves[1].fraction[-1] == 1.0 and set(curves[0].fraction) == {1.0}


def test_a_budget_smaller_than_n_evals_evaluates_once_per_new_example_count(digits):
    """Budget 10 with 20 evaluations: the marks repeated ([1, 1, 2, 2, ...]), so the same count was
    evaluated twice with an Adam step on an empty batch between; each count is now evaluated once."""
    steps = []
    model = mlp(digits, 8, 0)
    model.register_forward_pre_hook(lambda module, args: steps.append(len(args[0])) if module.training else None)
    curve = train_curve(model, digits, random_order(len(digits.train_y), torch.Generator()), budget=10, n_evals=20)
    assert curve.examples == list(range(11)) and min(steps) == 1


def test_curriculum_random_self_paced_and_focal_all_learn_clean_digits(digits):
    curves = compare_with_random(mlp(digits, 64, 0), digits, LossScorer(), Linear(c0=0.2), epochs=10,
                                 n_evals=5)
    gen = torch.Generator().manual_seed(0)
    curves["self-paced"] = train_curve(mlp(digits, 64, 0), digits, self_paced_order(SelfPaced(), digits, gen),
                                       budget=10 * len(digits.train_y), n_evals=5)
    curves["focal"] = train_curve(mlp(digits, 64, 0), digits, random_order(len(digits.train_y), gen),
                                  budget=10 * len(digits.train_y), n_evals=5, loss_fn=focal_loss)
    for name, curve in curves.items():
        assert curve.accuracy[0] < 0.2, name                 # untrained: chance is 0.1
        assert curve.accuracy[-1] > 0.9, (name, curve.accuracy)


def test_baby_steps_advance_on_plateaus_and_learn(digits):
    """Five class-balanced buckets by a teacher's loss; the loss on 300 held-out images moves the stage."""
    val, train = torch.arange(300), torch.arange(300, len(digits.train_y))
    data = SourceData("digits", digits.train_x[train], digits.train_y[train], digits.test_x, digits.test_y,
                      digits.class_names)
    teacher = mlp(data, 64, 1)
    train_curve(teacher, data, random_order(len(train), torch.Generator()), budget=len(train), n_evals=1)
    steps = BabyStep(LossScorer()(teacher, data.train_x, data.train_y), n_buckets=5, patience=1,
                     min_delta=0.02, labels=data.train_y)
    curve = train_curve(mlp(data, 64, 0), data,
                        baby_step_order(steps, data, digits.train_x[val], digits.train_y[val],
                                        torch.Generator().manual_seed(0)),
                        budget=10 * len(train), n_evals=10)
    assert curve.fraction[1] == pytest.approx(0.2, abs=0.01) and steps.stage >= 2, (steps.stage, curve.fraction)
    assert curve.accuracy[-1] > 0.8, curve.accuracy  # ten classes: chance is 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_curriculum_beats_random_order_under_heavy_label_noise(digits, seed):
    """The setting where a curriculum wins, and why.

    60% of the training labels are replaced by another class; a 512-unit MLP is trained for 30
    epochs' worth of examples, where random order memorises the wrong labels (its test accuracy
    falls from ~0.87 to ~0.80). The curriculum ranks examples by the model's own loss within each
    class, re-scored every half epoch, and its linear pacing grows from 30% of the data to 42% over
    the budget: the hardest examples, which hold most of the noisy labels, are never admitted, so
    at the same number of examples seen it is better by ~5-10 points (+9 and +6 measured on these
    seeds). Anti-curriculum (hardest first) is the negative control: it trains on the noise.

    Where it does not win (measured on digits, same model, 3 seeds): with 40% noise random order
    is as good (0.917 vs 0.908-0.917); once the pacing admits the whole data (e.g. competence
    c0=0.1 reaching 1 at half the budget) the advantage disappears by the end; self-paced
    learning with μ = 1.3 per pass selects every example after two passes and tracks random
    order; and a loss curriculum without the class-balanced ranking shuts out whole classes
    (test accuracy ~0.5).
    """
    data, noisy = with_noise(digits, 0.6, seed)
    n = len(data.train_y)
    budget = 30 * n

    def curriculum(anti: bool) -> PacedCurriculum:
        return PacedCurriculum(LossScorer(), Linear(c0=0.3), total=6 * budget, anti=anti,
                               balanced=True, rescore_every=n // 2)

    curves = {
        "random": random_order(n, torch.Generator().manual_seed(seed)),
        "curriculum": curriculum_order(curriculum(False), data, torch.Generator().manual_seed(seed)),
        "anti": curriculum_order(curriculum(True), data, torch.Generator().manual_seed(seed)),
    }
    curves = {name: train_curve(mlp(data, 512, seed), data, order, budget=budget, n_evals=10)
              for name, order in curves.items()}
    late = {name: late_mean(curve) for name, curve in curves.items()}
    assert max(curves["curriculum"].fraction) <= 0.42
    assert late["curriculum"] > 0.85
    assert late["curriculum"] >= late["random"] + 0.03, late
    assert late["anti"] <= late["random"] - 0.15, late
